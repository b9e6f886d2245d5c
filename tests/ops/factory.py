"""A database in the middle of its work, as the status command and the exporter find it."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from db.models import Image, Job, JobImage, Model, Page, Verdict, VerdictLabel, WorkStatus


def _sha(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def add_model(session: Session, version: str, active: bool) -> Model:
    model = Model(name="student", version=version, arch="tf_efficientnet_lite0",
                  checkpoint_path=f"/checkpoints/student-{version}", checkpoint_sha256=_sha(f"student-{version}"),
                  threshold_ai=0.7, threshold_real=0.3, active=active)
    session.add(model)
    session.flush()
    return model


def add_image(session: Session, url: str, status: WorkStatus, *, job: Job | None = None, error_code: str | None = None,
              queued_at: datetime | None = None, finished_at: datetime | None = None) -> Image:
    image = Image(url=url, url_hash=_sha(url), domain=url.split("/")[2], status=status, error_code=error_code,
                  job_id=job.id if job else None, finished_at=finished_at)
    if queued_at is not None:
        image.queued_at = queued_at
    session.add(image)
    session.flush()
    if job is not None:
        session.add(JobImage(job_id=job.id, image_id=image.id))
    return image


def add_verdict(session: Session, image: Image, model: Model, label: VerdictLabel) -> None:
    session.add(Verdict(image_id=image.id, model_id=model.id, p_ai=0.9 if label == VerdictLabel.AI else 0.1,
                        label=label))


@dataclass(frozen=True)
class Seeded:
    active_model: Model
    job_in_progress: Job  # images pending
    job_crawling: Job  # a page pending, no image yet
    job_finished: Job


def seed(session: Session, now: datetime) -> Seeded:
    """Images: 4 done, 1 queued (30 min old), 1 running, 4 failed (http_404 10 min ago, timeout
    5 min ago, no code just now, not_an_image 2 h ago). Jobs: one with pending images, one
    crawling, one finished. Two models, the second active."""
    add_model(session, "1", active=False)
    model = add_model(session, "2", active=True)
    job1 = Job(kind="enqueue", source="urls.txt")
    job2 = Job(kind="crawl", source="https://example.org/")
    job3 = Job(kind="crawl", source="https://example.net/")
    session.add_all([job1, job2, job3])
    session.flush()

    for i, label in enumerate([VerdictLabel.AI, VerdictLabel.REAL]):
        add_verdict(session, add_image(session, f"https://a.example/{i}.jpg", WorkStatus.DONE, job=job1,
                                       finished_at=now), model, label)
    add_image(session, "https://a.example/q.jpg", WorkStatus.QUEUED, job=job1, queued_at=now - timedelta(minutes=30))
    add_image(session, "https://a.example/r.jpg", WorkStatus.RUNNING, job=job1, queued_at=now - timedelta(minutes=20))
    add_image(session, "https://a.example/404.jpg", WorkStatus.FAILED, job=job1, error_code="http_404",
              finished_at=now - timedelta(minutes=10))

    for i in range(2):
        add_verdict(session, add_image(session, f"https://b.example/{i}.jpg", WorkStatus.DONE, job=job2,
                                       finished_at=now), model, VerdictLabel.AI)
    add_image(session, "https://b.example/slow.jpg", WorkStatus.FAILED, job=job2, error_code="timeout",
              finished_at=now - timedelta(minutes=5))
    add_image(session, "https://b.example/old.jpg", WorkStatus.FAILED, job=job2, error_code="not_an_image",
              finished_at=now - timedelta(hours=2))
    add_image(session, "https://c.example/x.jpg", WorkStatus.FAILED, finished_at=now)

    session.add(Page(url="https://example.net/", url_hash=_sha("https://example.net/"), domain="example.net",
                     job_id=job3.id, status=WorkStatus.QUEUED))
    session.flush()
    return Seeded(active_model=model, job_in_progress=job1, job_crawling=job3, job_finished=job2)
