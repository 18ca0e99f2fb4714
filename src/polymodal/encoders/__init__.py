"""Modality encoders: each maps one modality's batch fields to tokens (B, N, D) and a mask (B, N).

Build one by name with :func:`create_encoder`; :func:`list_encoders` shows what is registered::

    from polymodal.encoders import create_encoder, default_encoder

    encoder = create_encoder(default_encoder("tabular"), input_info=info, dim=64)
    tokens, mask = encoder(batch["inputs"]["labs"])  # (B, N, 64), (B, N) bool, True = valid
"""

# Importing each encoder module registers its encoders.
from polymodal.encoders.image import ImageTimmEncoder
from polymodal.encoders.registry import (
    INPUT_INFO_KEYS,
    KINDS,
    create_encoder,
    default_encoder,
    encoder_kinds,
    list_encoders,
    register_encoder,
)
from polymodal.encoders.series import SeriesTokenEncoder
from polymodal.encoders.tabular import TabularTokenEncoder
from polymodal.encoders.text import TextTransformerEncoder
from polymodal.encoders.volume import VolumeMonaiEncoder, VolumePatchEncoder
from polymodal.encoders.volume_multiscale import VolumeMultiscaleEncoder
from polymodal.layers.weights import load_pretrained_backbone

__all__ = [
    "INPUT_INFO_KEYS",
    "KINDS",
    "ImageTimmEncoder",
    "SeriesTokenEncoder",
    "TabularTokenEncoder",
    "TextTransformerEncoder",
    "VolumeMonaiEncoder",
    "VolumeMultiscaleEncoder",
    "VolumePatchEncoder",
    "create_encoder",
    "default_encoder",
    "encoder_kinds",
    "list_encoders",
    "load_pretrained_backbone",
    "register_encoder",
]
