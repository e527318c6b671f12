"""nf: variational inference with normalizing flows (Rezende & Mohamed, ICML 2015), reproduced.

The folders are layers; a module imports only from its own layer or those below
it (``tests/test_layers.py`` checks this). Bottom to top:

* ``nf.validation``: argument checks with one-line errors naming the bad value.
* ``nf.flows``: the flow layers, one family a module (planar, radial, NICE
  couplings, circular and convolutional couplings), the fused chains
  (``planar_chain`` and ``radial_chain``, with ``layer_chain``: what they
  share; ``coupling_chain`` and ``conv_chain``, with ``stacked``: weights
  stacked over layers) and their numerical checks.
* ``nf.models``: what the flows are used in: the Gaussian base density, the
  toy energies U1-U4 and their normalising constants (``quadrature``), exact
  flow densities, and the MNIST DLGM.
* ``nf.runs``: the run cache (one folder per config, atomic, with
  provenance), checkpoints, parallel workers, config defaults, devices.
* ``nf.experiments``: training and scoring: ``toy`` (Fig. 3), ``mnist``
  (Table 2), the shared ``training`` loop parts, the MNIST ``data``, the
  recipe ``mnist_study``, the paired ``comparisons`` of scored runs, and
  ``jobs`` (missing runs trained as submitit jobs, locally or on SLURM).
* ``nf.report``: every table, figure and verdict the book shows, made from
  runs: a reading per chapter (``toy``, ``mnist``, ``nice``, ``conv``,
  ``flows``), ``figures`` and ``style``, ``tables``, ``verdicts`` with
  ``toy_verdicts`` and ``mnist_verdicts``, ``scorecard``, ``provenance``, and
  the paper's numbers.
* ``nf.book``: the chapters, their parameter profiles, the runs a chapter
  asks for (``chapter_runs``), execution, the HTML build and the command line.

See ``ARCHITECTURE.md`` for the path of one number from a chapter cell to a
cached run and back into a table.
"""

__version__ = "0.1.0"
