"""Pixels to vectors: decoding images and videos (`decode`, on the CPU; `decode_device`,
nvJPEG on a GPU), the frozen backbones and their offline weights (`backbones`), and the
embedding rows the cluster writes into table parts (`embed_write`)."""
