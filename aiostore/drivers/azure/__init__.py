"""The ``azure`` driver: Azure Blob Storage through azure-storage-blob's asyncio client.

Install with ``pip install 'aiostore[azure]'``. A store authenticates with a connection string,
an account key or a SAS token (or none, for public containers); none of them ever appears in
reprs, snapshots, error messages or log records (a filter on the SDK's loggers, installed from
``start`` to ``aclose``, replaces them with ``***``).

- **Puts** are all-or-nothing. An object up to ``block_size`` goes up with one Put Blob; a
  larger one is staged as blocks of ``block_size`` (``max_concurrency`` in flight) and made
  visible by one Put Block List at the end. A put that fails or is cancelled before that commit
  commits nothing: its staged blocks stay uncommitted, invisible to reads and listings, and the
  service discards them by itself (Azure keeps uncommitted blocks for a week, or until the next
  commit of that blob name drops them); there is no API to delete them earlier without touching
  the blob. The commit request itself is shielded: once sent, a cancellation waits for its
  answer, so nothing becomes visible after the caller was told the put was cancelled (the put
  may then have happened). Create-only puts send ``If-None-Match: *`` on the Put Blob or on
  the commit, so the service decides atomically (409/412 → ``Duplicate``). Each put carries a
  random token in its metadata: a retried create-only commit that meets its own earlier, lost
  success is recognised and succeeds.
- **Metadata** (nested JSON) travels as one metadata value, ``aiostore``: base64 of the compact
  UTF-8 JSON, so any text is header-safe.
- **Reads** are ranged GETs of 4 MiB; the SDK pins every range after the first to the first
  answer's ETag (If-Match), and so does a resumed read after a transient failure. The reader's
  ``info`` (full size, time, metadata, ETag) comes from the first GET's answer. When a range's
  body breaks, the SDK itself re-requests that range up to three times before failing it.
- **Retries**: the SDK's retry policy is off; the driver's :class:`~aiostore.sdk.RetryPolicy`
  retries resets, timeouts, throttling and 5xx with jittered back-off. A read and its resumes
  share one budget of ``max_attempts`` requests; every other request (a block, a commit, a
  list page, a delete) has its own.
- **Health**: connection failures, timeouts and 5xx answers revoke the capability the operation
  needed; the probe (container properties, and with ``probe_write`` a tiny blob written,
  range-read and deleted under ``PREFIX.aiostore-probe/``, which ``list`` hides) restores it.

- **Names**: Azure drops a dot that ends a blob name, so a key is stored with ``%`` written
  ``%25`` and each dot that ends a segment written ``%2E`` (see ``_names``): every valid key
  is its own blob, and listings decode the names.

Known limits: with a ``prefix`` (or many escaped characters) the longest keys can exceed
Azure's 1024-character name limit; two overwrite
puts of one key racing with staged blocks may fail one of them (a commit drops the other put's
uncommitted blocks), never mixing their data.
"""

from ._driver import AzureDriver as AzureDriver
from ._options import AzureOptions as AzureOptions

__all__ = ["AzureDriver", "AzureOptions"]
