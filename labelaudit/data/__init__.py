"""Data: discover a dataset's images and labels, decode them once, and make label noise.

* :mod:`labelaudit.data.loading` -- class folders or a labels CSV in, decoded uint8
  images (N, S, S, 3), given labels and ``(path, reason)`` rows for what was not used out;
* :mod:`labelaudit.data.noise` -- seeded label noise with known truth (benchmarks, demo).
"""

from labelaudit.data.loading import (
    DECODER_VERSION, MAX_IMAGE_PIXELS, DatasetError, ImageDecodeError, ImageTooLarge, LoadedDataset, cache_key,
    decode_image,
    load_dataset,
)

__all__ = ["DECODER_VERSION", "MAX_IMAGE_PIXELS", "DatasetError", "ImageDecodeError", "ImageTooLarge", "LoadedDataset",
           "cache_key", "decode_image", "load_dataset"]
