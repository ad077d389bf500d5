"""archc runtime: data, training and benchmarking for any `torch.nn.Module`.

The runtime knows nothing of YAML specs; the CLI hands it modules built by the compiler.
"""
