"""Industrial inspection streaming pipeline.

Cameras in, one PASS/FAIL/NOT_INSPECTED/ERROR verdict per captured frame out over
ZeroMQ. Importing this package needs no GPU and no camera SDK.
"""

__version__ = "0.1.0"
