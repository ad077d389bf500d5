"""archc: a compiler for convolutional architectures written as YAML dataflow graphs.

    import archcompiler
    net = archcompiler.compile("specs/no_attention.yaml")
    model = net.module(seed=0)
"""
__version__ = "0.1.0"


def compile(source, *, file=None):  # noqa: A001
    """Compile a spec (a path or YAML text) into a `Compiled`; see archcompiler.api."""
    from archcompiler.api import compile as _compile

    return _compile(source, file=file)


__all__ = ["compile", "__version__"]
