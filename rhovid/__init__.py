"""rhovid: self-supervised video representation learning at scale.

Stages (each a package mapped from a top-level folder, see DESIGN.md):
``rhovid.ingest`` (raw videos -> fMP4 WebDataset shards), ``rhovid.store`` (box priors in
Zarr), ``rhovid.train`` (loader, models, methods, loop), ``rhovid.evaluate``.
"""

__version__ = "0.1.0"
