"""Training and scoring: the toy fits (Fig. 3), the MNIST DLGM runs (Table 2), the recipe study, paired comparisons."""
