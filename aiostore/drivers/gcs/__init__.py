"""The ``gcs`` driver: Google Cloud Storage through gcloud-aio-storage (aiohttp).

Install with ``pip install 'aiostore[gcs]'``. ``endpoint_url`` points the driver at an emulator
(fake-gcs-server, ...), used without authentication unless ``service_file`` is given;
``service_file`` is a credentials JSON file (application default credentials otherwise).

- **Puts** are all-or-nothing. An object up to ``chunk_size`` goes up with one request (with
  its metadata); a larger one as a resumable upload fed chunk by chunk, whose last chunk (sent
  with the total size) makes it visible. A put that fails or is cancelled before that cancels
  the upload session (a shielded, bounded DELETE): nothing becomes visible. The last request
  is shielded: once sent, a cancellation waits for its answer, so nothing becomes visible after
  the caller was told the put was cancelled (the put may then have happened). A retried chunk
  first asks the server how much it holds and sends only the rest. gcloud-aio-storage uploads
  only whole in-memory files, so these two protocols are spoken directly on the same aiohttp
  session, with the same credentials.
- **Create-only puts** send ``ifGenerationMatch=0``: Google Cloud Storage refuses the upload
  when the object exists (412 → ``Duplicate``), atomically. Emulators (fake-gcs-server,
  gcp-storage-emulator) ignore that precondition, so the probe finds out — it uploads a scratch
  object twice, the second time create-only — whether the server enforces it. Until a probe has
  shown that it does (and always on a server that does not), a create-only put looks for the
  object and writes it while holding a process-wide guard of the name: two puts of this process
  never both create an object, but a writer in another process may still slip in between the
  look and the write. The store's probe verdict for WRITE_ACCESS says which mode is in use.
  Every put carries a random token in its metadata: a retried create-only upload that meets its
  own earlier, lost success is recognised and succeeds.
- **Metadata** (nested JSON) travels as one custom metadata value, ``aiostore``: base64 of the
  compact UTF-8 JSON.
- **Reads** fetch the object resource (size, time, metadata, generation), then stream the
  media of exactly that generation (``generation=N`` with a ``Range``): the reader's ``info``
  and its bytes describe one version, and a resumed read after a transient failure asks for
  the same generation (a replaced object is then ``ChecksumMismatch``), within the read's one
  retry budget.
- **Retries**: the driver's :class:`~aiostore.sdk.RetryPolicy` retries resets, timeouts,
  throttling and 5xx with jittered back-off; a read's media GET and its resumes share one
  budget of ``max_attempts`` requests, every other request (the read's resource lookup, a
  chunk, a list page, a delete) has its own.
- **Health**: connection failures, timeouts, 429 and 5xx revoke the capability the operation
  needed; the probe (bucket metadata, and with ``probe_write`` scratch objects under
  ``PREFIX.aiostore-probe/``, which ``list`` hides) restores it.
"""

from ._driver import GCSDriver as GCSDriver
from ._options import GCSOptions as GCSOptions

__all__ = ["GCSDriver", "GCSOptions"]
