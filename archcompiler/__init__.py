"""archc: a compiler for convolutional architectures written as YAML dataflow graphs."""
__version__ = "0.1.0"
