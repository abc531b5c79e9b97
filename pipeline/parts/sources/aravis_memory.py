"""Reading an Aravis buffer's memory in place, without the copy PyGObject makes.

Owns the one native call the GenICam source makes past PyGObject: `Buffer.get_data()`
returns the payload as a new `bytes` object (a full copy of the frame), so a frame
would be copied twice on its way into a lent frame slot. `buffer_memory` instead asks
libaravis itself (`arv_buffer_get_data`, through ctypes, on the library GObject
introspection already loaded) for the payload's address and wraps it as a read-only
numpy view. The view is valid only while the caller holds the popped buffer: it must
be copied or converted before the buffer is pushed back to the stream.
"""

from __future__ import annotations

import ctypes

import gi
import numpy as np

gi.require_version("Aravis", "0.8")
gi.require_version("GIRepository", "2.0")
from gi.repository import GIRepository  # noqa: E402  (after require_version)


def _libaravis() -> ctypes.CDLL:
    names = GIRepository.Repository.get_default().get_shared_library("Aravis") or "libaravis-0.8.so.0"
    lib = ctypes.CDLL(names.split(",")[0])
    lib.arv_buffer_get_data.restype = ctypes.c_void_p
    lib.arv_buffer_get_data.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_size_t)]
    return lib


_LIB = _libaravis()
_capsule_pointer = ctypes.pythonapi.PyCapsule_GetPointer
_capsule_pointer.restype = ctypes.c_void_p
_capsule_pointer.argtypes = [ctypes.py_object, ctypes.c_char_p]


def buffer_memory(buffer) -> np.ndarray:
    """The received payload of a popped `Aravis.Buffer` as a read-only uint8 view (no copy)."""
    size = ctypes.c_size_t()
    address = _LIB.arv_buffer_get_data(_capsule_pointer(buffer.__gpointer__, None), ctypes.byref(size))
    if not address or not size.value:
        return np.empty(0, np.uint8)
    view = np.ctypeslib.as_array((ctypes.c_ubyte * size.value).from_address(address))
    view.flags.writeable = False
    return view
