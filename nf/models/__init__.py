"""What the flows are used in: base density, toy energies and their normalising constants, exact densities, the DLGM
and its locally optimised bound."""
