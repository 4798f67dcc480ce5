"""Pixels to vectors, and what is done with the vectors as media: decoding images and
videos (`decode`, on the CPU; `decode_device`, nvJPEG on a GPU), the frozen backbones and
their offline weights (`backbones`), the embedding pipeline (`embed_pipeline`), the rows
the cluster writes (`embed_write`) and assembles into table parts (`embed_assemble`),
near-duplicates among the vectors (`neighbours`), and Grad-CAM over a photo (`gradcam`)."""
