"""polymodal: multimodal clinical prediction robust to missing modalities."""

__version__ = "0.1.0"
