"""Safe fetching: the bottom layer every package that downloads or reads images stands on.

:mod:`fetch.client` (``SafeFetcher``: the HTTP client under the SSRF guard and its limits), :mod:`fetch.netguard`
(which URLs and addresses a download may use), :mod:`fetch.errors` (the error codes of a failed download and the
neutral base of every work item's error), :mod:`fetch.local` (local files, for the embedded mode and the data
tools), :mod:`fetch.protocol` (``FetchResult`` and the one ``Fetcher`` protocol). Torch-free; it imports no package
of ours but :mod:`aidetect`, and this ``__init__`` stays empty so that importing one module loads only that one.
"""
