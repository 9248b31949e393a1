"""Read current-state tables through a native pyarrow filesystem, never a Python one.

``DeltaTable.to_pyarrow_dataset()`` without ``filesystem`` wraps deltalake's object store in a
``pyarrow.fs.PyFileSystem``: every data file Arrow opens is a ``PythonFile``, a C++ object that
owns a Python object. Arrow tears a finished scan down (exec plan, scan generators, Parquet
readers, those files) on one of its worker threads, after it has already woken the thread waiting
in ``to_table()``; releasing each file there takes the GIL. On a loaded machine that worker can be
descheduled until the main thread is in interpreter finalization, and then CPython 3.11 ends it
with ``pthread_exit`` inside ``PyGILState_Ensure``; the forced unwind reaches a noexcept C++
destructor (``arrow::py::OwnedRefNoGIL``) and libstdc++ calls ``std::terminate``: "terminate
called without an active exception", SIGABRT (exit 134) after the work was done. (The same
happens on the error path: a failed read leaves a Python exception owned by a worker.)

A native filesystem keeps Python objects out of Arrow's threads, so nothing they do needs the GIL
and finalization cannot kill them. See tests/test_native_exit.py.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING
from urllib.parse import urlparse

import pyarrow.fs as pafs

from lakehouse.lake.store import s3_filesystem

if TYPE_CHECKING:
    import pyarrow.dataset as ds
    from deltalake import DeltaTable


def arrow_filesystem(table_uri: str) -> pafs.FileSystem:
    """A table's folder (a local path or ``s3://bucket/prefix/table``) as a native pyarrow
    filesystem rooted there. S3 is configured like the lake store: ``AWS_ENDPOINT_URL_S3`` or
    ``AWS_ENDPOINT_URL``, ``AWS_REGION`` or ``AWS_DEFAULT_REGION``, the standard credential chain."""
    if table_uri.startswith("s3://"):
        parsed = urlparse(table_uri)
        return pafs.SubTreeFileSystem(
            f"{parsed.netloc}/{parsed.path.strip('/')}".rstrip("/"), s3_filesystem()
        )
    path = urlparse(table_uri).path if table_uri.startswith("file://") else table_uri
    return pafs.SubTreeFileSystem(os.path.abspath(path), pafs.LocalFileSystem())


def native_dataset(dt: DeltaTable, table_uri: str) -> ds.Dataset:
    """``dt.to_pyarrow_dataset()`` (the same files and partition values) read natively."""
    return dt.to_pyarrow_dataset(filesystem=arrow_filesystem(table_uri))
