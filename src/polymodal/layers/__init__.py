"""Neural-network layers with no polymodal concept in them, shared by ``encoders/`` and ``fusion/``.

* :mod:`~polymodal.layers.attention`: masked attention, feed-forward, pre-LN transformer blocks;
* :mod:`~polymodal.layers.pooling` and :mod:`~polymodal.layers.positional`: token helpers;
* :mod:`~polymodal.layers.rollout`: recording attention and rolling it out through blocks;
* :mod:`~polymodal.layers.vit_insertion`: a timm ViT that takes extra tokens before block k;
* :mod:`~polymodal.layers.pretrained` and :mod:`~polymodal.layers.weights`: offline pretrained
  weights (``package:<model>``, local files) and loading them into timm backbones.

Nothing is imported here: each module pulls in only what it needs (timm, transformers).
"""
