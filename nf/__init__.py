"""nf: variational inference with normalizing flows (Rezende & Mohamed, ICML 2015).

Subpackages and modules:

* ``nf.flows``: planar, radial and NICE layers with a uniform interface;
* ``nf.distributions``: the diagonal Gaussian base density;
* ``nf.energies``: the 2-D target energies U1-U4 of Table 1;
* ``nf.toy``: fitting flows to those energies;
* ``nf.data``: binarised MNIST;
* ``nf.cache``: the run cache behind every result in the book;
* ``nf.book``: chapters, parameter profiles, execution and HTML build.
"""

__version__ = "0.1.0"
