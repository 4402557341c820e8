"""The model factory: simulator data -> teacher -> distilled student -> pruned -> INT8 bundle.

torch is an optional extra (``pip install -e '.[train]'``): nothing here is imported by the
node. ``tiny-node model build`` runs the whole chain (``build.py``); every step is seeded and
leaves its result in the output folder, so a rerun skips what is done.
"""
