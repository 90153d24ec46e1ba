"""How a library's exception becomes part of bner's one-line error messages."""

from __future__ import annotations


def first_line(error: BaseException, limit: int = 300) -> str:
    """The first line of ``error``'s message (its type's name when it has none), at most ``limit`` characters.

    TensorFlow, ONNX Runtime and tokenizers raise messages of dozens of lines; bner's errors
    quote only the line that says what went wrong.
    """
    text = str(error).strip()
    return text.splitlines()[0][:limit] if text else type(error).__name__
