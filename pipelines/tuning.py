"""Hyperparameter search as SageMaker's automatic model tuning does it, for the local tuning step and emulate.

A search space (integer, continuous and categorical ranges), a strategy (Bayesian through Optuna's TPE
sampler, random, grid), the objective read the way SageMaker reads it (a regex over the job's log; the
last match is the final value, earlier ones are intermediate values), the median stopping rule of
`TrainingJobEarlyStoppingType: Auto`, and a loop that keeps up to N trials running, asking for the next
hyperparameters only when a slot frees (so a Bayesian search learns from every finished trial).
`optuna` is imported only when a search is made.
"""

from __future__ import annotations

import csv
import itertools
import json
import os
import re
import signal
import statistics
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from pipelines.fsutil import remove_inside

STRATEGIES = {"bayesian": "Bayesian", "random": "Random", "grid": "Grid"}
SCALING = {"auto": "Auto", "linear": "Linear", "log": "Logarithmic"}
FINISHED = ("Completed", "Failed", "Stopped")
MIN_PEERS_TO_STOP = 2  # the median stopping rule needs this many completed trials to compare against
WARMUP_VALUES = 2  # ... and this many intermediate values of the running trial


@dataclass(frozen=True)
class Range:
    """One tuned hyperparameter: kind is integer, continuous or categorical."""

    name: str
    kind: str
    low: float | None = None
    high: float | None = None
    scaling: str = "auto"
    values: tuple[Any, ...] = ()

    def typed(self, value: Any) -> Any:
        """A value of this range as the trial receives it (int for integer ranges)."""
        if self.kind == "integer":
            return int(value)
        if self.kind == "continuous":
            return float(value)
        return value


@dataclass
class Trial:
    """One training job of a search and what became of it."""

    number: int
    hyperparameters: dict[str, Any]
    status: str = "Pending"  # Completed | Failed | Stopped
    objective: float | None = None
    duration_s: float | None = None
    job: str = ""
    error: str = ""
    intermediate: list[float] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def record(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_record(cls, data: dict[str, Any]) -> "Trial":
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


def grid_size(space: list[Range]) -> int:
    """How many trials a grid search over (categorical) ranges runs."""
    size = 1
    for item in space:
        size *= len(item.values)
    return size


class Search:
    """Asks for the next trial's hyperparameters and learns from finished ones (not thread-safe: one caller)."""

    def __init__(self, strategy: str, space: list[Range], maximize: bool, max_jobs: int | None, seed: int = 0):
        # by name: the same ranges give the same suggestions whatever order they were declared in (the compiled
        # definition groups them by kind), so run and emulate try the same hyperparameters
        self.strategy, self.space, self.maximize = strategy, sorted(space, key=lambda r: r.name), maximize
        self.total = grid_size(space) if strategy == "grid" and not max_jobs else int(max_jobs or 1)
        self.asked = 0
        self._pending: dict[int, Any] = {}
        if strategy == "grid":
            combos = itertools.product(*[item.values for item in self.space])
            self._grid = [dict(zip([item.name for item in self.space], combo)) for combo in combos]
            self._seen: set[tuple] = set()
            return
        import logging
        import warnings

        import optuna

        optuna.logging.set_verbosity(logging.WARNING)
        warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
        if strategy == "random":
            sampler: Any = optuna.samplers.RandomSampler(seed=seed)
        else:  # SageMaker's Bayesian search starts with a few random trials too
            startup = max(2, min(10, self.total // 3))
            sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup, constant_liar=True)
        self._optuna = optuna
        self._study = optuna.create_study(direction="maximize" if maximize else "minimize", sampler=sampler)
        self._distributions = {item.name: _distribution(optuna, item) for item in self.space}

    def ask(self) -> dict[str, Any] | None:
        """The next trial's tuned hyperparameters, or None when the search has run its course."""
        if self.asked >= self.total:
            return None
        self.asked += 1
        if self.strategy == "grid":
            for params in self._grid:
                key = tuple(sorted(params.items()))
                if key not in self._seen:
                    self._seen.add(key)
                    return dict(params)
            return None
        trial = self._study.ask(self._distributions)
        params = {item.name: item.typed(trial.params[item.name]) for item in self.space}
        self._pending[id(params)] = trial
        return params

    def tell(self, params: dict[str, Any], status: str, objective: float | None) -> None:
        """A trial asked for with these hyperparameters finished."""
        if self.strategy == "grid":
            return
        trial = self._pending.pop(id(params), None)
        if trial is None:
            return
        states = self._optuna.trial.TrialState
        if status == "Completed" and objective is not None:
            self._study.tell(trial, objective)
        else:
            self._study.tell(trial, state=states.PRUNED if status == "Stopped" else states.FAIL)


def _distribution(optuna: Any, item: Range) -> Any:
    log = item.scaling == "log"
    if item.kind == "integer":
        return optuna.distributions.IntDistribution(int(item.low or 0), int(item.high or 0), log=log)
    if item.kind == "continuous":
        return optuna.distributions.FloatDistribution(float(item.low or 0), float(item.high or 0), log=log)
    return optuna.distributions.CategoricalDistribution(list(item.values))


def objective_values(log: str, regex: str) -> list[float]:
    """Every value the objective regex finds in a job's log, in order (SageMaker's metric definitions)."""
    values = []
    for match in re.finditer(regex, log, flags=re.MULTILINE):
        try:
            values.append(float(match.group(1)))
        except (TypeError, ValueError, IndexError):
            continue
    return values


def median_rule_stops(current: list[float], completed: Iterable[list[float]], maximize: bool) -> bool:
    """SageMaker's early stopping: stop a job whose objective at step n is worse than the median of the running
    averages, up to step n, of the trials that completed before it."""
    n = len(current)
    if n < WARMUP_VALUES:
        return False
    peers = [sum(values[:n]) / n for values in completed if len(values) >= n]
    if len(peers) < MIN_PEERS_TO_STOP:
        return False
    median = statistics.median(peers)
    return current[-1] < median if maximize else current[-1] > median


def best_trial(trials: list[Trial], maximize: bool) -> Trial | None:
    """The completed trial with the best objective (the earliest on a tie), as BestTrainingJob."""
    done = [t for t in trials if t.status == "Completed" and t.objective is not None]
    if not done:
        return None
    return sorted(done, key=lambda t: _rank_key(t, maximize))[0]


def _rank_key(trial: Trial, maximize: bool) -> tuple[float, int]:
    objective = trial.objective or 0.0  # only completed trials with an objective are ranked
    return (-objective if maximize else objective, trial.number)


def ranked(trials: list[Trial], maximize: bool) -> list[Trial]:
    """Every trial, best first (completed ones by objective, then the rest by number): TrainingJobSummaries."""
    done = [t for t in trials if t.status == "Completed" and t.objective is not None]
    done.sort(key=lambda t: _rank_key(t, maximize))
    return done + sorted((t for t in trials if t not in done), key=lambda t: t.number)


def run_search(search: Search, parallel: int, run_trial: Callable[[Trial], Trial],
               finished: list[Trial], on_finished: Callable[[Trial], None]) -> list[Trial]:
    """Keep up to `parallel` trials running until the search is done. Trial k is asked for once trials 1 to
    k - parallel have ended, and the search hears of trials in number order: the same seed gives the same
    trials whatever the timing, so a resumed search (`finished` holds trials an earlier attempt finished) asks
    again for what it asked before, reuses each finished trial whose hyperparameters it asks for again, and
    runs the rest. An exception in a trial (an interrupted run) stops the search once the running trials end,
    and is raised."""
    earlier = {t.number: t for t in finished}
    results: dict[int, Trial] = {}
    asked: dict[int, dict[str, Any]] = {}
    told = number = 0
    running: dict[Future, Trial] = {}
    failure: BaseException | None = None

    def tell_up_to(last: int) -> bool:
        nonlocal told
        while told < last and told + 1 in results:
            told += 1
            search.tell(asked[told], results[told].status, results[told].objective)
        return told >= last

    with ThreadPoolExecutor(max_workers=max(1, parallel)) as pool:
        while True:
            while failure is None and len(running) < parallel and tell_up_to(number + 1 - parallel):
                params = search.ask()
                if params is None:
                    break
                number += 1
                asked[number] = params
                reused = earlier.get(number)
                if reused is not None and reused.hyperparameters == params:
                    results[number] = reused
                    continue
                trial = Trial(number=number, hyperparameters=params)
                running[pool.submit(run_trial, trial)] = trial
            if not running:
                break
            done, _ = wait(list(running), return_when=FIRST_COMPLETED)
            for future in done:
                trial = running.pop(future)
                try:
                    result = future.result()
                except BaseException as exc:  # noqa: BLE001 - re-raised once the others are done
                    failure = failure or exc
                    continue
                results[trial.number] = result
                on_finished(result)
    if failure is not None:
        raise failure
    return [results[n] for n in sorted(results)]


def write_trials_table(folder: Path, trials: list[Trial], metric: str, tuned: list[str]) -> None:
    """trials.csv (one row per trial: status, objective, duration, hyperparameters) and trials.json in folder."""
    columns = ["trial", "job", "status", metric, "duration_s", *tuned, "error"]
    with open(folder / "trials.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        for t in trials:
            writer.writerow([t.number, t.job, t.status, "" if t.objective is None else t.objective, t.duration_s,
                             *[t.hyperparameters.get(name, "") for name in tuned], t.error])
    (folder / "trials.json").write_text(json.dumps([{k: v for k, v in t.record().items() if k != "extra"}
                                                    for t in trials], indent=2))


def finished_trials(trials_dir: Path, fingerprint: str, run_dir: Path) -> list[Trial]:
    """Trials an earlier attempt of a step finished (their `trial.json`), recorded with this fingerprint (config,
    code and inputs); the folders of any others are removed."""
    kept = []
    for record_file in sorted(trials_dir.glob("*/trial.json")):
        try:
            record = json.loads(record_file.read_text())
        except (OSError, ValueError):
            continue
        trial = Trial.from_record(record)
        whole = trial.status != "Completed" or (record_file.parent / "output" / "model.tar.gz").is_file()
        if record.get("fingerprint") == fingerprint and trial.status in FINISHED and whole:
            kept.append(trial)
    keep = {f"{t.number:03d}" for t in kept}
    for folder in trials_dir.glob("*"):
        if folder.is_dir() and folder.name not in keep:
            remove_inside(folder, run_dir)  # unfinished, or from another config
    return kept


def logged_argv(argv: list[str], log: Path, pid_file: Path) -> list[str]:
    """argv run with its output in its own log (a trial's), its process id written first (to stop it early)."""
    script = 'echo $$ > "$1"; log="$2"; shift 2; exec "$@" > "$log" 2>&1'
    return ["/bin/sh", "-c", script, "sh", str(pid_file), str(log), *argv]


class EarlyStopper:
    """Watches a running trial's log; stops the job (SIGTERM to its process group) when the median rule says so."""

    def __init__(self, log: Path, pid_file: Path, regex: str, maximize: bool,
                 completed: Callable[[], list[list[float]]], interval: float = 0.5):
        self.log, self.pid_file, self.regex, self.maximize = log, pid_file, regex, maximize
        self.completed, self.interval = completed, interval
        self.stopped = False
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def __enter__(self) -> "EarlyStopper":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._done.set()
        self._thread.join()

    def _watch(self) -> None:
        while not self._done.wait(self.interval):
            try:
                values = objective_values(self.log.read_text(errors="replace"), self.regex)
            except OSError:
                continue
            if median_rule_stops(values, self.completed(), self.maximize):
                self.stopped = True
                try:
                    os.killpg(int(self.pid_file.read_text().strip()), signal.SIGTERM)
                except (OSError, ValueError):
                    pass
                return


def local_parallelism(max_parallel_jobs: int) -> int:
    """Trials at once on this machine: as the config asks, never more than its CPUs."""
    return max(1, min(max_parallel_jobs, os.cpu_count() or 1))


def cpus_per_trial(parallel: int) -> int:
    """Each trial's share of this machine (its SM_NUM_CPUS), as if each ran on its own instance."""
    return max(1, (os.cpu_count() or 1) // max(1, parallel))


def elapsed(started: float) -> float:
    return round(time.time() - started, 3)
