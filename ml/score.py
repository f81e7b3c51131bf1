"""Batch scoring entry point: `python -m ml.score --model URI --rows URI --config URI --predictions URI
[--capture URI]`.

Loads a model artifact once (verified against the registry's manifest sha256), checks that the rows
file is the version its data checks passed (`rows_md5`), reads it in chunks (only the columns the
feature state needs, plus the id column), applies the artifact's feature state with the training
feature code (ml/features.py), predicts, and appends each chunk to the output Parquet file: the id
column and `score` (float64), in input order. With `--capture` it also keeps, from the same pass, a
seeded sample by id of the scored rows (id, the raw columns the model read, score; ml/sample.py):
what the day's drift report compares, so nothing reads the day's file again after scoring.

Memory is bounded by `chunk_rows` and by the input's row-group size (pyarrow decodes a row group's
column chunks to cut batches from it), not by the size of the file: about two chunks are in flight,
one being predicted (compiled code and LightGBM release the GIL) while the next is read and turned into
features straight from Arrow (text columns read as dictionaries, no pandas copy of the chunk).

The output appears all at once: it is written to a hidden sibling `.<name>.tmp-<pid>-<random>` and
renamed onto the target (a remote target is written locally and uploaded in one PUT), so a killed
run leaves the previous file or the new one, never a partial one; the next run removes the killed
run's temporary file. The output's row groups have a fixed size whatever `chunk_rows` is, so the
same rows and model give a byte-identical file.

Config JSON keys: `expected_manifest_sha256` (required), `id_column` (required), `chunk_rows`
(default 100000), `model_version` (optional, echoed in the report), `rows_md5` (optional: refuse any
other version of the rows file), `capture_rows` (the capture's size; null: every row) and
`capture_seed`, `compiled` (default true: a LightGBM model predicts with its compiled form, ml/compiled.py,
or with LightGBM where that is unavailable; the report's `predictor` says which) and `shards` (default 1).
Under Dagster Pipes the report is the asset's materialization (data version = sha256 of the output);
by hand it is JSON on stdout.

`--parts FOLDER [--shard I]` instead of `--predictions`/`--capture` scores one shard of `shards`
(ml/shards.py: a contiguous range of the rows, the index from the argument or the platform) into
FOLDER: `part-0000I-of-0000N.parquet`, its capture sample and, last, its report as JSON. Only shard 0
speaks Pipes; the launcher publishes the day from the N reports (ml/predictions.py).
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import os
import re
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ml import io, runtime
from ml.artifact import ArtifactIntegrityError
from ml.cost import process_usage
from ml.features import FeatureError
from ml.ids import IdTypeError, arrow_ids_as_text
from ml.pipes import reporter
from ml.sample import StreamSample
from ml.shards import ShardView, detected_index, part_name, plan, shard_index

if TYPE_CHECKING:
    from ml.predictor import Predictor

SCORE_COLUMN = "score"
OUTPUT_ROW_GROUP_ROWS = 100_000  # fixed, so the file's bytes do not depend on chunk_rows
PROGRESS_EVERY_CHUNKS = 10
_HISTOGRAM_BINS = 100_000  # score quantiles to within 1e-5 in bounded memory


class ScoringError(ValueError):
    """The rows, model or configuration cannot be scored; the message names the file, column or key."""


def _positive(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


@dataclass(frozen=True)
class ScoreConfig:
    expected_manifest_sha256: str
    id_column: str
    chunk_rows: int = 100_000
    model_version: str | int | None = None
    rows_md5: str | None = None  # the checked version of the rows file: anything else is refused
    capture_rows: int | None = None  # rows kept in the capture (a seeded sample by id); None: every row
    capture_seed: int = 0
    compiled: bool = True  # LightGBM models predict compiled (ml/compiled.py) where that is available
    shards: int = 1  # the day is scored as this many shards (ml/shards.py), one process each

    @classmethod
    def from_dict(cls, doc: Any, origin: str = "config") -> ScoreConfig:
        if not isinstance(doc, dict):
            raise ScoringError(f"{origin}: the scoring config must be a JSON object, got {type(doc).__name__}")
        known = {
            "expected_manifest_sha256",
            "id_column",
            "chunk_rows",
            "model_version",
            "rows_md5",
            "capture_rows",
            "capture_seed",
            "compiled",
            "shards",
        }
        unknown = sorted(set(doc) - known)
        missing = sorted({"expected_manifest_sha256", "id_column"} - set(doc))
        if unknown or missing:
            raise ScoringError(f"{origin}: unknown keys {unknown}, missing keys {missing} (known: {sorted(known)})")
        digest, id_column = doc["expected_manifest_sha256"], doc["id_column"]
        chunk_rows, version = doc.get("chunk_rows", 100_000), doc.get("model_version")
        rows_md5, capture_rows, seed = doc.get("rows_md5"), doc.get("capture_rows"), doc.get("capture_seed", 0)
        shards = doc.get("shards", 1)
        if not isinstance(digest, str) or not re.fullmatch(r"[0-9a-f]{64}", digest):
            raise ScoringError(f"{origin}: expected_manifest_sha256 must be 64 lowercase hex digits, got {digest!r}")
        if not isinstance(id_column, str) or not id_column or id_column == SCORE_COLUMN:
            raise ScoringError(f"{origin}: id_column must be a column name other than {SCORE_COLUMN!r}")
        if not _positive(chunk_rows):
            raise ScoringError(f"{origin}: chunk_rows must be a positive integer, got {chunk_rows!r}")
        if version is not None and (isinstance(version, bool) or not isinstance(version, str | int)):
            raise ScoringError(f"{origin}: model_version must be text or an integer, got {version!r}")
        if rows_md5 is not None and not (isinstance(rows_md5, str) and re.fullmatch(r"[0-9a-f]{32}", rows_md5)):
            raise ScoringError(f"{origin}: rows_md5 must be 32 lowercase hex digits, got {rows_md5!r}")
        if capture_rows is not None and not _positive(capture_rows):
            raise ScoringError(f"{origin}: capture_rows must be a positive integer or null, got {capture_rows!r}")
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ScoringError(f"{origin}: capture_seed must be an integer, got {seed!r}")
        compiled = doc.get("compiled", True)
        if not isinstance(compiled, bool):
            raise ScoringError(f"{origin}: compiled must be true or false, got {compiled!r}")
        if not _positive(shards):
            raise ScoringError(f"{origin}: shards must be a positive integer, got {shards!r}")
        return cls(digest, id_column, chunk_rows, version, rows_md5, capture_rows, seed, compiled, shards)


def remove_stale_temporaries(target: Path) -> list[str]:
    """Delete `.<name>.tmp-<pid>-*` siblings left by killed runs; a live process's file is left alone."""
    removed = []
    for path in target.parent.glob(f".{glob.escape(target.name)}.tmp-*"):
        pid = path.name.removeprefix(f".{target.name}.tmp-").split("-")[0]
        if pid.isdigit() and int(pid) != os.getpid() and _alive(int(pid)):
            continue  # another run writing the same target right now
        path.unlink(missing_ok=True)
        removed.append(path.name)
    return sorted(removed)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def _local_model(uri: str) -> Iterator[Path]:
    """The artifact as a local folder: a remote one is downloaded to a temporary folder first."""
    if not io.is_remote(uri):
        yield Path(io.resolve(uri))
        return
    fs, base = fsspec.core.url_to_fs(uri)
    base = base.rstrip("/")
    with tempfile.TemporaryDirectory(prefix="keel-model-") as tmp:
        for remote in fs.find(base):
            local = Path(tmp) / remote[len(base) + 1 :]
            local.parent.mkdir(parents=True, exist_ok=True)
            fs.get_file(remote, str(local))
        yield Path(tmp)


def load_predictor(model: str, config: ScoreConfig) -> Predictor:
    with _local_model(model) as directory:
        try:
            from ml.predictor import Predictor  # imports LightGBM: see the note at the bottom

            return Predictor.load(directory, config.expected_manifest_sha256, compiled=config.compiled)
        except ArtifactIntegrityError as error:
            raise ScoringError(f"model {model} refused: {error}") from None


def _verify(handle: BinaryIO, rows: str, expected_md5: str | None) -> None:
    """Refuse a rows file that is not the version its data checks passed (its md5, DVC's hash of a file)."""
    if expected_md5 is None:
        return
    actual = io.handle_digest(handle, "md5")
    if actual != expected_md5:
        raise ScoringError(
            f"rows file {rows} (md5 {actual}) is not the version its data checks passed ({expected_md5}); "
            "it changed since: check the day again before scoring it"
        )


@dataclass(frozen=True)
class CheckedRows:
    """The rows file opened once: the bytes hashed are the bytes read, whatever is renamed over its path.

    `still_checked` refuses the rows if the open file was written in place while it was read (a `cp`
    over it): its size, modification time or change time changed."""

    parquet: pq.ParquetFile
    still_checked: Callable[[], None]


def _unchanged_since(handle: BinaryIO, rows: str, expected_md5: str | None) -> Callable[[], None]:
    before = os.fstat(handle.fileno())

    def still_checked() -> None:
        now = os.fstat(handle.fileno())
        same = (now.st_size, now.st_mtime_ns) == (before.st_size, before.st_mtime_ns)
        # The change time too: a writer can set the modification time back (`cp -p`), not the change time. A
        # link added or removed (a rename over the path, a cache's hard link) also moves it, and changes no
        # byte: then the bytes are hashed again, where the check's md5 is known.
        if same and now.st_ctime_ns != before.st_ctime_ns:
            if now.st_nlink == before.st_nlink:
                same = False
            elif expected_md5 is not None:
                same = io.handle_digest(handle, "md5") == expected_md5
        if not same:
            raise ScoringError(
                f"rows file {rows} was rewritten in place while it was scored; nothing was published: "
                "check the day again before scoring it"
            )

    return still_checked


@contextlib.contextmanager
def _open_rows(rows: str, expected_md5: str | None, dictionary: list[str] | None = None) -> Iterator[CheckedRows]:
    """The rows file, verified, opened by local path (a remote one is downloaded once, to a temporary file).

    `dictionary` columns are read as Arrow dictionaries where they are text: Parquet stores them so,
    and the feature code then works per distinct value without a string per row."""
    fs, path = fsspec.core.url_to_fs(rows)
    if not fs.exists(path):
        raise ScoringError(f"rows file not found: {rows}")
    with contextlib.ExitStack() as stack:
        local = io.resolve(rows)
        if io.is_remote(rows):
            local = str(Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="keel-rows-"))) / "rows.parquet")
            fs.get_file(path, local)
        try:
            handle = stack.enter_context(open(local, "rb"))  # noqa: SIM115 - closed by the stack
        except OSError as error:
            raise ScoringError(f"rows file {rows} cannot be opened: {error}") from None
        still_checked = _unchanged_since(handle, rows, expected_md5)
        _verify(handle, rows, expected_md5)
        handle.seek(0)
        try:
            parquet = stack.enter_context(pq.ParquetFile(handle, read_dictionary=dictionary))
        except (OSError, pa.ArrowException) as error:
            raise ScoringError(f"rows file {rows} is not a readable Parquet file: {error}") from None
        yield CheckedRows(parquet, still_checked)


def _batches(
    parquet: pq.ParquetFile, columns: list[str], chunk_rows: int, rows: str, numeric: Sequence[str] = ()
) -> Iterator[pa.RecordBatch]:
    """Chunks of exactly `chunk_rows` rows (the last one fewer): the reader ends a batch at each row group
    when it reads dictionaries, and a file of small row groups would otherwise be scored in small chunks."""
    pending: list[pa.RecordBatch] = []
    buffered = 0
    for batch in _read_batches(parquet, columns, chunk_rows, rows):
        pending.append(io.decimals_as_float64(batch, numeric))  # decimals read as the checks and training read them
        buffered += batch.num_rows
        while buffered >= chunk_rows:
            table = pa.Table.from_batches(pending)
            yield _single_batch(table.slice(0, chunk_rows))
            rest = table.slice(chunk_rows)
            pending, buffered = rest.to_batches(), rest.num_rows
    if buffered:
        yield _single_batch(pa.Table.from_batches(pending))


def _single_batch(table: pa.Table) -> pa.RecordBatch:
    return table.combine_chunks().to_batches()[0]  # one chunk per column; several row groups' dictionaries unified


def _read_batches(parquet: pq.ParquetFile, columns: list[str], chunk_rows: int, rows: str) -> Iterator[pa.RecordBatch]:
    batches = parquet.iter_batches(batch_size=chunk_rows, columns=columns)
    while True:
        try:
            batch = next(batches)
        except StopIteration:
            return
        except (OSError, pa.ArrowException) as error:
            raise ScoringError(f"rows file {rows} could not be read: {error}") from None
        yield batch


class _Scores:
    """Writes (id, score) rows in fixed-size row groups and keeps bounded-memory score statistics."""

    def __init__(self, writer: pq.ParquetWriter) -> None:
        self.writer, self.parts, self.buffered = writer, [], 0
        self.rows, self.total = 0, 0.0
        self.histogram = np.zeros(_HISTOGRAM_BINS, dtype="int64")

    def add(self, ids: pa.Array, scores: np.ndarray) -> None:
        self.rows += len(scores)
        self.total += float(scores.sum())
        bins = np.clip((scores * _HISTOGRAM_BINS).astype("int64"), 0, _HISTOGRAM_BINS - 1)
        self.histogram += np.bincount(bins, minlength=_HISTOGRAM_BINS)
        self.parts.append(pa.Table.from_arrays([ids, pa.array(scores, pa.float64())], schema=self.writer.schema))
        self.buffered += len(scores)
        while self.buffered >= OUTPUT_ROW_GROUP_ROWS:
            table = pa.concat_tables(self.parts)
            self._write(table.slice(0, OUTPUT_ROW_GROUP_ROWS))
            rest = table.slice(OUTPUT_ROW_GROUP_ROWS)
            self.parts, self.buffered = [rest], len(rest)

    def close(self) -> None:
        if self.buffered:
            self._write(pa.concat_tables(self.parts))
        self.parts, self.buffered = [], 0

    def _write(self, table: pa.Table) -> None:
        # Contiguous arrays: page boundaries then depend on the rows only, not on how chunks were cut.
        self.writer.write_table(table.combine_chunks(), row_group_size=OUTPUT_ROW_GROUP_ROWS)

    def quantile(self, q: float) -> float:
        """The q-quantile (the lower order statistic, as numpy's method="lower") to within half a bin."""
        rank = q * (self.rows - 1)
        index = int(np.searchsorted(np.cumsum(self.histogram), rank, side="right"))
        return round((index + 0.5) / _HISTOGRAM_BINS, 6)


def _score_chunks(
    parquet: pq.ParquetFile,
    predictor: Predictor,
    config: ScoreConfig,
    rows: str,
    writer: pq.ParquetWriter,
    capture: StreamSample | None,
    log: Callable[[str], None],
) -> tuple[_Scores, int]:
    """Read + transform chunk i+1 on this thread while chunk i is predicted on a worker thread."""
    state, total = predictor.state, parquet.metadata.num_rows
    columns = _read_columns(state, config)
    scores, chunks, started = _Scores(writer), 0, time.perf_counter()

    def finish(batch: pa.RecordBatch, future: Future) -> None:
        nonlocal chunks
        predicted = future.result()
        ids = arrow_ids_as_text(batch.column(config.id_column), config.id_column, f"rows file {rows}")
        scores.add(ids, predicted)
        if capture is not None:
            table = pa.Table.from_batches([batch])
            table = table.set_column(table.schema.get_field_index(config.id_column), config.id_column, ids)
            capture.add(table.append_column(SCORE_COLUMN, pa.array(predicted, pa.float64())))
        chunks += 1
        if chunks == 1 or chunks % PROGRESS_EVERY_CHUNKS == 0 or scores.rows == total:
            rate = scores.rows / max(time.perf_counter() - started, 1e-9)
            log(f"scored chunk {chunks}: {scores.rows:,} of {total:,} rows ({rate:,.0f} rows/s)")

    pending: tuple[pa.RecordBatch, Future] | None = None
    offset = 0
    # Two feature buffers, reused in turn: chunk i is predicted from one while chunk i+1 fills the other.
    shape = (min(config.chunk_rows, total), len(state.columns))
    buffers = [np.empty(shape, dtype="float64"), np.empty(shape, dtype="float64")]
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="keel-predict") as pool:
        numeric = [n.column for n in state.numeric]
        for number, batch in enumerate(_batches(parquet, columns, config.chunk_rows, rows, numeric)):
            try:
                # Straight from Arrow (no pandas copy of the chunk) into the buffer chunk i-2 used: it is done.
                features = predictor.matrix(batch, buffers[number % 2])
            except FeatureError as error:
                raise ScoringError(f"{rows}, rows {offset:,} to {offset + batch.num_rows - 1:,}: {error}") from None
            offset += batch.num_rows
            future = pool.submit(predictor.model.predict, features)
            if pending is not None:
                finish(*pending)
            pending = (batch, future)
        if pending is not None:
            finish(*pending)
    scores.close()
    return scores, chunks


def _as_stored(field: pa.Field) -> pa.Field:
    """A column read as a dictionary, as the file stores it (the capture keeps the file's types)."""
    return field.with_type(field.type.value_type) if pa.types.is_dictionary(field.type) else field


def _read_columns(state: Any, config: ScoreConfig) -> list[str]:
    """The id and the raw columns the feature state reads: all a chunk needs, for the scores and the capture."""
    return list(dict.fromkeys([config.id_column, *state.input_columns]))


def score_file(
    model: str,
    rows: str,
    predictions: str,
    config: ScoreConfig | dict[str, Any],
    log: Callable[[str], None] = lambda message: print(message, file=sys.stderr, flush=True),
    capture: str | None = None,
    shard: int | None = None,
) -> dict[str, Any]:
    """Score the rows file with the model artifact into `predictions`; return the report.

    With `capture`, also write there the rows a seeded sample by id keeps (`capture_rows` of them, all
    when None: the id, the raw columns the model reads and the score), for the drift report. With
    `shard`, score only that shard of `config.shards` (ml/shards.py); the report then also holds
    the shard's range and its score histogram, which the day's manifest merges (ml/predictions.py).
    """
    config = config if isinstance(config, ScoreConfig) else ScoreConfig.from_dict(config)
    started = time.perf_counter()
    target = predictions if io.is_remote(predictions) else io.resolve(predictions)
    stale = [] if io.is_remote(target) else remove_stale_temporaries(Path(target))
    if stale:
        log(f"removed temporary files left by an interrupted run: {', '.join(stale)}")
    predictor = load_predictor(model, config)
    log(f"predicting with {predictor.engine}")
    state = predictor.state
    with _open_rows(rows, config.rows_md5, [c.column for c in (*state.categorical, *state.boolean)]) as opened:
        parquet = opened.parquet
        # As the chunks are read: numeric decimals as float64 (the capture keeps these types).
        schema = io.decimals_as_float64(parquet.schema_arrow.empty_table(), [n.column for n in state.numeric]).schema
        needed = [*predictor.state.input_columns, config.id_column]
        missing = [c for c in dict.fromkeys(needed) if c not in schema.names]
        if missing:
            raise ScoringError(f"rows file {rows} lacks columns {missing} that the model's feature state needs")
        if parquet.metadata.num_rows == 0:
            raise ScoringError(f"rows file {rows} has no rows to score")
        selected = None
        if shard is not None:
            selected = plan(parquet.metadata, config.shards)[shard]
            log(
                f"shard {shard} of {config.shards}: rows {selected.start:,} to {selected.stop - 1:,} ({selected.split})"
            )
            parquet = ShardView(parquet, selected)
        try:  # ids are written as text (ml/ids.py): the labels join them whatever type the day's file has
            arrow_ids_as_text(pa.array([], schema.field(config.id_column).type), config.id_column, f"rows file {rows}")
        except IdTypeError as error:
            raise ScoringError(str(error)) from None
        out_schema = pa.schema([pa.field(config.id_column, pa.string()), (SCORE_COLUMN, pa.float64())])
        sample = StreamSample(config.capture_rows, config.id_column, config.capture_seed) if capture else None
        with io.atomic_output(target) as tmp:
            # Ids and scores are (nearly) all distinct: a dictionary would be tried on every page and dropped.
            with pq.ParquetWriter(str(tmp), out_schema, use_dictionary=False) as writer:
                scores, chunks = _score_chunks(parquet, predictor, config, rows, writer, sample, log)
            digest = io.file_digest(str(tmp))
            opened.still_checked()  # before the predictions are published: the rows were not rewritten in place
        captured = None
        if sample is not None:
            fields = [schema.field(c) for c in _read_columns(predictor.state, config)]
            read = pa.schema([*fields, (SCORE_COLUMN, pa.float64())])
            table = sample.table(read).cast(pa.schema([_as_stored(f) for f in read]))  # the file's own types
            with io.atomic_output(capture if io.is_remote(capture) else io.resolve(capture)) as tmp:
                pq.write_table(table, str(tmp))
            captured = len(table)
    seconds = time.perf_counter() - started
    report = {
        "rows": scores.rows,
        "chunks": chunks,
        "chunk_rows": config.chunk_rows,
        "seconds": round(seconds, 3),
        "rows_per_second": round(scores.rows / max(seconds, 1e-9), 1),
        "rows_uri": rows,
        "model_uri": model,
        "model_family": predictor.model.family,
        "predictor": predictor.engine,
        "model_manifest_sha256": config.expected_manifest_sha256,
        "model_version": config.model_version,
        "id_column": config.id_column,
        "predictions_uri": target,
        "predictions_sha256": digest,
        "capture_uri": capture,
        "capture_rows": captured,
        "score_mean": round(scores.total / scores.rows, 6),
        "score_quantiles": {f"p{int(q * 100)}": scores.quantile(q) for q in (0.1, 0.5, 0.9)},
        "stale_temporaries_removed": stale,
    }
    if selected is not None:
        bins = np.flatnonzero(scores.histogram)
        report["shard"] = {
            "index": selected.index,
            "count": selected.count,
            "split": selected.split,
            "start": selected.start,
            "stop": selected.stop,
            "score_sum": scores.total,
            "histogram": {"bins": bins.tolist(), "counts": scores.histogram[bins].tolist()},
        }
    return report


def read_config(uri: str) -> ScoreConfig:
    try:
        doc = io.read_json(uri)
    except FileNotFoundError:
        raise ScoringError(f"scoring config not found: {uri}") from None
    except ValueError as error:
        raise ScoringError(f"scoring config {uri} is not valid JSON: {error}") from None
    return ScoreConfig.from_dict(doc, origin=uri)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m ml.score", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="model artifact directory (path or URI)")
    parser.add_argument("--rows", required=True, help="rows to score (Parquet path or URI)")
    parser.add_argument("--config", required=True, help="scoring configuration JSON")
    outputs = parser.add_mutually_exclusive_group(required=True)
    outputs.add_argument("--predictions", help="output Parquet file (path or URI), replaced whole")
    outputs.add_argument(
        "--parts", help="output folder of this shard's part, capture sample and report (ml/predictions.py)"
    )
    parser.add_argument("--capture", help="also write the sample of scored rows the drift report reads here")
    parser.add_argument("--shard", type=int, help="with --parts: the shard to score (default: from the platform)")
    return parser


INPUTS = ["model", "rows", "config"]


def main(argv: list[str] | None = None) -> int:
    arguments = vars(_parser().parse_args(argv))
    shard_argument = arguments.pop("shard")
    requested = {k: v for k, v in arguments.items() if v is not None}
    if "parts" in requested:
        return _main_shard(requested, shard_argument)
    outputs = [name for name in ("predictions", "capture") if name in requested]
    with reporter() as report:
        # In a cloud job the platform may deliver inputs and collect outputs elsewhere (ml/runtime.py).
        paths = runtime.resolve(requested, inputs=INPUTS, outputs=outputs)
        report.log(f"scoring {requested['rows']} with the model at {requested['model']}")
        result = score_file(
            paths["model"],
            paths["rows"],
            paths["predictions"],
            read_config(paths["config"]),
            log=report.log,
            capture=paths.get("capture"),
        )
        result["config_uri"] = requested["config"]
        if paths != requested:  # the backend delivers the outputs where the caller asked
            result.update(predictions_uri=requested["predictions"], rows_uri=requested["rows"])
            result.update(model_uri=requested["model"], capture_uri=requested.get("capture"))
        report.log(
            f"wrote {result['rows']:,} scores to {result['predictions_uri']} in {result['seconds']:.1f}s "
            f"({result['rows_per_second']:,.0f} rows/s); mean score {result['score_mean']:.4f}"
        )
        report.materialization(result, data_version=result["predictions_sha256"])
    return 0


def _main_shard(requested: dict[str, str], shard_argument: int | None) -> int:
    """One shard of the day into the parts folder; only shard 0 speaks Dagster Pipes (one message channel).

    Every shard writes `<part>.parquet`, `<part>.capture.parquet` and, last, `<part>.json` (its report);
    the launcher reads the N reports and publishes the day's manifest (ml/predictions.py).
    """
    if "capture" in requested:
        raise ScoringError("--capture goes with --predictions; with --parts each shard writes its capture sample")
    index, _ = detected_index(shard_argument)
    with reporter(pipes=index in (None, 0)) as report:
        paths = runtime.resolve(requested, inputs=INPUTS, outputs=["parts"])
        config = read_config(paths["config"])
        index = shard_index(config.shards, shard_argument)
        folder = paths["parts"].rstrip("/")
        if not io.is_remote(folder):
            folder = io.resolve(folder)
            Path(folder).mkdir(parents=True, exist_ok=True)
        stem = f"{folder}/{part_name(index, config.shards)}"
        report.log(f"scoring {requested['rows']} with the model at {requested['model']}")
        report.log(f"shard {index} of {config.shards} into {requested['parts']}")
        result = score_file(
            paths["model"],
            paths["rows"],
            f"{stem}.parquet",
            config,
            log=report.log,
            capture=f"{stem}.capture.parquet",
            shard=index,
        )
        result.update(config_uri=requested["config"], rows_uri=requested["rows"], model_uri=requested["model"])
        result.update(predictions_uri=f"{requested['parts'].rstrip('/')}/{part_name(index, config.shards)}.parquet")
        result["capture_uri"] = result["predictions_uri"].removesuffix(".parquet") + ".capture.parquet"
        result["usage"] = process_usage(report.started)  # this shard's own CPU: the day sums its shards'
        io.write_json(result, f"{stem}.json")  # last: a shard is done when its report is there
        report.log(
            f"shard {index}: wrote {result['rows']:,} scores in {result['seconds']:.1f}s "
            f"({result['rows_per_second']:,.0f} rows/s)"
        )
        summary = {k: v for k, v in result.items() if k != "shard"}
        summary["shard"] = {k: v for k, v in result["shard"].items() if k != "histogram"}
        report.materialization(summary, data_version=result["predictions_sha256"])
    return 0


if __name__ == "__main__":
    # LightGBM imports scikit-learn when it is installed, only for its sklearn-style wrappers, which
    # scoring never uses; that import (scipy.stats) costs ~2.5 s of every night's scoring process.
    # Marking it absent before LightGBM loads skips it; only this process is affected.
    sys.modules.setdefault("sklearn", None)
    sys.exit(main())
