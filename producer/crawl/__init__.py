"""The crawler: pages in, image URLs out, through the same queue path as ``aidetect enqueue``.

``celery -A producer.crawl worker -Q crawl`` runs :func:`producer.crawl.crawler.process_page` as the task
``producer.crawl_page`` (the app lives in ``producer.crawl.celery``); ``aidetect crawl --local`` runs the same
function in-process (:mod:`producer.crawl.local`). The frontier is the ``pages`` table. Never imports torch.
"""
