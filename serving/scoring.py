"""Scoring on one worker thread that batches whatever requests are waiting into one `Predictor.predict`.

The features' fixed cost per call (pandas, once per column) dwarfs their cost per row, so rows
of concurrent requests are scored together: nothing waits for a batch to fill, a request arriving
while the worker is busy simply joins the next call. Served work (champion and canary) always goes
before shadow work, and shadow work is scored in small batches, so a response waits for at most one
of them; shadow work waits in a bounded queue and its oldest entries are dropped (and counted) if
the worker cannot keep up.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from ml.predictor import Predictor

# (scores or None, error or None, perf_counter when its batch started, ... when it finished)
Done = Callable[[np.ndarray | None, BaseException | None, float, float], None]
MAX_SHADOW_ROWS = 5_000  # beyond, the oldest shadow rows are dropped: a shadow samples, it must not build a backlog
# Shadow rows per predict call: a served request that arrives meanwhile waits for at most this batch.
SHADOW_BATCH_ROWS = 64


@dataclass
class Job:
    predictor: Predictor
    rows: list[dict[str, Any]]
    done: Done  # called on the worker thread
    submitted: float = field(default_factory=time.perf_counter)


def rows_batch(rows: list[dict[str, Any]], predictor: Predictor) -> pa.RecordBatch:
    """The rows as batch scoring reads them from Parquet (an Arrow batch): numbers as float64, the rest as
    given. Arrow rather than pandas: the feature code's fixed cost per call is a few times smaller."""
    numeric = {n.column for n in predictor.state.numeric}
    columns = {}
    for column in predictor.state.input_columns:
        values = [row.get(column) for row in rows]
        columns[column] = pa.array(values, pa.float64()) if column in numeric else pa.array(values)
    return pa.RecordBatch.from_pydict(columns)


class Scorer:
    def __init__(self) -> None:
        self._served: list[Job] = []
        self._shadow: deque[Job] = deque()
        self._shadow_rows = 0
        self.shadow_dropped = 0
        self.batches = 0  # predict calls, and the rows they scored: their ratio is the batching achieved
        self.rows = 0
        self._cond = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="scorer", daemon=True)
        self._thread.start()

    def submit(self, job: Job, *, shadow: bool = False) -> None:
        with self._cond:
            if shadow:
                self._shadow.append(job)
                self._shadow_rows += len(job.rows)
                while self._shadow_rows > MAX_SHADOW_ROWS and len(self._shadow) > 1:
                    dropped = self._shadow.popleft()
                    self._shadow_rows -= len(dropped.rows)
                    self.shadow_dropped += len(dropped.rows)
            else:
                self._served.append(job)
            self._cond.notify()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join(timeout=30)

    def _take(self) -> list[Job] | None:
        with self._cond:
            while not self._served and not self._shadow and not self._closed:
                self._cond.wait()
            if self._served:
                jobs, self._served = self._served, []
            elif self._shadow:
                jobs, rows = [], 0
                while self._shadow and (not jobs or rows + len(self._shadow[0].rows) <= SHADOW_BATCH_ROWS):
                    job = self._shadow.popleft()
                    jobs.append(job)
                    rows += len(job.rows)
                self._shadow_rows -= rows
            else:
                return None
            return jobs

    def _run(self) -> None:
        while (jobs := self._take()) is not None:
            groups: dict[int, list[Job]] = {}
            for job in jobs:
                groups.setdefault(id(job.predictor), []).append(job)
            for group in groups.values():
                self._score(group)

    def _score(self, jobs: list[Job]) -> None:
        predictor = jobs[0].predictor
        rows = [row for job in jobs for row in job.rows]
        started = time.perf_counter()
        try:
            scores = predictor.predict(rows_batch(rows, predictor))
        except Exception as error:
            if len(jobs) > 1:  # one request's rows broke the batch: score each alone so only it fails
                for job in jobs:
                    self._score([job])
                return
            jobs[0].done(None, error, started, time.perf_counter())
            return
        finished = time.perf_counter()
        self.batches += 1
        self.rows += len(rows)
        start = 0
        for job in jobs:
            job.done(scores[start : start + len(job.rows)], None, started, finished)
            start += len(job.rows)
