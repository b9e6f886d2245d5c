import io
from collections.abc import Sequence

from sqlalchemy import func, select

from db.models import Image, JobImage, WorkStatus
from db.session import make_engine, make_session_factory
from producer.enqueue import EnqueueOptions, enqueue_urls, read_url_lines


class RecordingSender:
    """A real-shaped sender that keeps the batches it was given and reports a scripted queue depth."""

    def __init__(self, depths: Sequence[int] = ()) -> None:
        self.batches: list[list[int]] = []
        self.depths = list(depths)
        self.depth_calls = 0

    def send(self, image_ids: Sequence[int]) -> None:
        self.batches.append(list(image_ids))

    def queue_depth(self) -> int:
        self.depth_calls += 1
        return self.depths.pop(0) if self.depths else 0


def test_read_url_lines_plain_and_csv() -> None:
    plain = io.BytesIO(b"http://a.example/1.jpg\n\n# comment\nhttp://a.example/2.jpg\n")
    assert [u.strip() for u in read_url_lines(plain)] == ["http://a.example/1.jpg", "http://a.example/2.jpg"]
    table = io.BytesIO(b"id,url,alt\n1,http://a.example/1.jpg,x\n2,http://a.example/2.jpg,y\n")
    assert list(read_url_lines(table)) == ["http://a.example/1.jpg", "http://a.example/2.jpg"]
    single = io.BytesIO(b"url\nhttp://a.example/3.jpg\n")
    assert [u.strip() for u in read_url_lines(single)] == ["http://a.example/3.jpg"]


def test_enqueue_dedupes_rejects_and_batches(any_db_url: str) -> None:
    sessions = make_session_factory(make_engine(any_db_url))
    urls = [f"http://img.example/{i}.jpg" for i in range(10)]
    lines = urls + ["HTTP://IMG.example:80/3.jpg", urls[0], "ftp://x/y.jpg", "http://u:p@img.example/a.jpg"]
    sender = RecordingSender()
    summary = enqueue_urls(lines, sessions=sessions, sender=sender, options=EnqueueOptions(batch_size=4))

    assert summary.submitted == 14
    assert summary.accepted == 10
    assert summary.duplicates_in_input == 2
    assert dict(summary.rejected) == {"bad_scheme": 1, "credentials": 1}
    assert [len(b) for b in sender.batches] == [4, 4, 2]
    sent = [i for batch in sender.batches for i in batch]
    assert len(set(sent)) == 10
    with sessions() as session:
        statuses = dict(session.execute(select(Image.status, func.count()).group_by(Image.status)).all())
        assert statuses == {WorkStatus.QUEUED: 10, WorkStatus.FAILED: 2}
        codes = set(session.scalars(select(Image.error_code).where(Image.status == WorkStatus.FAILED)))
        assert codes == {"bad_scheme", "credentials"}
        assert session.scalar(select(func.count()).select_from(JobImage)) == 12

    # The same URLs again: pending ones are not sent twice.
    again = RecordingSender()
    second = enqueue_urls(urls, sessions=sessions, sender=again, options=EnqueueOptions(batch_size=4))
    assert second.accepted == 0 and second.already_pending == 10 and again.batches == []


def test_backpressure_waits_until_queue_drains(sqlite_url: str) -> None:
    sessions = make_session_factory(make_engine(sqlite_url))
    sender = RecordingSender(depths=[50, 50, 3])
    options = EnqueueOptions(batch_size=10, max_queued=5, backpressure_poll_s=0.01)
    enqueue_urls([f"http://img.example/{i}.jpg" for i in range(10)], sessions=sessions, sender=sender,
                 options=options)
    assert sender.depth_calls == 3
    assert len(sender.batches) == 1
