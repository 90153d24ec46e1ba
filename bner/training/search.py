"""Hyperparameter search: a grid or random search over training settings, trial after trial.

One small file says what to try (YAML or JSON)::

    base:                       # settings every trial shares (TrainConfig names)
      data_dir: data/wnut17
      pretrained_model: .cache/minilm/model
    parameters:                 # the values to try
      learning_rate: [5.0e-5, 1.0e-4]
      num_train_epochs: [2, 3]
    algorithm: grid             # or random
    max_trials: 4               # random: how many draws; grid: at most this many combinations
    seed: 0                     # random: which draws
    metric: dev_f1              # chosen on dev, never on test

``bner search spec.yaml --output_dir runs/search`` trains each trial with
:func:`bner.train` in ``<output_dir>/trial-NNN/``, skips trials already finished (a killed
search resumes where it stopped, an interrupted trial from its checkpoint), rewrites the
results table (``results.csv`` and ``results.md``, best dev F1 first) after every
trial, and exports the best trial's model at the end. Test scores are shown, never
used to choose.
"""

from __future__ import annotations

import csv
import dataclasses
import io as text_io
import itertools
import json
import random
from collections.abc import Callable

from bner import io
from bner.config import ConfigError, TrainConfig, all_fields
from bner.folders.run_folder import read_record
from bner.training import recipe

ALGORITHMS = ("grid", "random")
METRICS = ("dev_f1", "dev_precision", "dev_recall")
SPEC_KEYS = {"base", "parameters", "algorithm", "max_trials", "seed", "metric"}
# Settings that say where a trial writes: the search decides them.
OWN_SETTINGS = ("output_dir", "export_dir", "export")


@dataclasses.dataclass(frozen=True)
class SearchSpec:
    base: dict
    parameters: dict[str, list]
    algorithm: str = "grid"
    max_trials: int | None = None
    seed: int = 0
    metric: str = "dev_f1"

    @classmethod
    def read(cls, path: str) -> SearchSpec:
        try:
            text = io.read_text(path)
        except FileNotFoundError:
            raise ConfigError(f"{path}: file not found") from None
        if path.endswith((".yaml", ".yml")):
            try:
                import yaml
            except ImportError:
                raise ConfigError(f"{path}: reading YAML needs PyYAML (pip install pyyaml), or write the spec as JSON") from None
            try:
                data = yaml.safe_load(text)
            except yaml.YAMLError as e:
                raise ConfigError(f"{path}: not valid YAML ({e})") from None
        else:
            try:
                data = json.loads(text)
            except json.JSONDecodeError as e:
                raise ConfigError(f"{path}:{e.lineno}: not valid JSON ({e.msg})") from None
        return cls.from_json(data, path)

    @classmethod
    def from_json(cls, data, source: str = "search spec") -> SearchSpec:
        if not isinstance(data, dict):
            raise ConfigError(f"{source}: expected a mapping with base, parameters, algorithm, max_trials, seed, metric")
        unknown = set(data) - SPEC_KEYS
        if unknown:
            raise ConfigError(f"{source}: unknown key(s) {', '.join(sorted(unknown))}; expected {', '.join(sorted(SPEC_KEYS))}")
        spec = cls(
            base=data.get("base") or {}, parameters=data.get("parameters") or {}, algorithm=data.get("algorithm", "grid"),
            max_trials=data.get("max_trials"), seed=data.get("seed", 0), metric=data.get("metric", "dev_f1"),
        )
        spec.check(source)
        return spec

    def check(self, source: str) -> None:
        settings = all_fields()
        if not isinstance(self.base, dict) or not isinstance(self.parameters, dict) or not self.parameters:
            raise ConfigError(f"{source}: parameters must map at least one setting to the values to try")
        for name in [*self.base, *self.parameters]:
            if name not in settings:
                raise ConfigError(f"{source}: {name} is not a training setting (see bner train --help)")
            if name in OWN_SETTINGS:
                raise ConfigError(f"{source}: {name} is set by the search for each trial; leave it out")
        for name, values in self.parameters.items():
            if not isinstance(values, list) or not values:
                raise ConfigError(f"{source}: parameters.{name} must be a non-empty list of values")
            if name in self.base:
                raise ConfigError(f"{source}: {name} is both in base and in parameters")
        if self.algorithm not in ALGORITHMS:
            raise ConfigError(f"{source}: algorithm {self.algorithm!r}: expected one of {', '.join(ALGORITHMS)}")
        if self.metric not in METRICS:
            raise ConfigError(f"{source}: metric {self.metric!r}: trials are chosen on dev only; expected one of {', '.join(METRICS)}")
        if self.max_trials is not None and (not isinstance(self.max_trials, int) or self.max_trials < 1):
            raise ConfigError(f"{source}: max_trials must be a whole number of at least 1")
        if self.algorithm == "random" and self.max_trials is None:
            raise ConfigError(f"{source}: a random search needs max_trials")
        for trial in self.trials():
            TrainConfig.from_settings(**self.base, **trial).check()  # every value of every trial, before any training

    def trials(self) -> list[dict]:
        """Each trial's parameter values, in the order they run (deterministic for a spec)."""
        names = list(self.parameters)
        if self.algorithm == "grid":
            combos = [dict(zip(names, values)) for values in itertools.product(*(self.parameters[n] for n in names))]
            return combos[: self.max_trials] if self.max_trials else combos
        draw = random.Random(self.seed)
        return [{n: draw.choice(self.parameters[n]) for n in names} for _ in range(self.max_trials)]


def trial_dir(output_dir: str, number: int) -> str:
    return io.join(output_dir, f"trial-{number:03d}")


def run_search(
    spec: SearchSpec, output_dir: str, say: Callable[[str], None] = print, train: Callable | None = None,
) -> dict:
    """Run every trial not yet finished; write the results table; export the best. Returns the best row."""
    train = train or recipe.train
    data_dir = TrainConfig.from_settings(**spec.base).data.data_dir
    if not io.exists(io.join(data_dir, "dev.conll")):
        raise ConfigError(f"{data_dir}: a search chooses on dev F1 and needs dev.conll there")
    io.makedirs(output_dir)
    io.write_text(io.join(output_dir, "search.json"), json.dumps(dataclasses.asdict(spec), indent=2, default=str) + "\n")
    trials = spec.trials()
    rows = []
    for number, values in enumerate(trials, start=1):
        folder = trial_dir(output_dir, number)
        config = TrainConfig.from_settings(**spec.base, **values, output_dir=folder, export=False)
        record = read_record(folder)
        if record and record.get("status") == "finished":
            say(f"trial {number}/{len(trials)} {describe(values)}: finished earlier")
        else:
            say(f"\ntrial {number}/{len(trials)} {describe(values)} → {folder}")
            train(config, say=say)
            record = read_record(folder)
        rows.append(result_row(number, values, folder, record))
        write_table(rows, spec, output_dir)
    best = max(rows, key=lambda r: (r[spec.metric] if r[spec.metric] is not None else -1, -r["trial"]))
    say(f"\nbest on {spec.metric.replace('_', ' ')}: trial {best['trial']} {describe(best['values'])} "
        f"({spec.metric} {100 * best[spec.metric]:.2f})")
    best["export"] = export_best(spec, best, say)
    io.write_text(io.join(output_dir, "best.json"), json.dumps(best, indent=2) + "\n")
    write_table(rows, spec, output_dir)
    say(f"results: {io.join(output_dir, 'results.md')} (+ .csv); best trial's export: {best['export']}")
    return best


def describe(values: dict) -> str:
    return " ".join(f"{k}={v}" for k, v in values.items())


def result_row(number: int, values: dict, folder: str, record: dict | None) -> dict:
    result = (record or {}).get("result", {}) or {}
    dev, test = result.get("dev") or {}, result.get("test") or {}
    training = (record or {}).get("training", {})
    return {
        "trial": number, "values": values, "folder": folder,
        "dev_f1": dev.get("f1"), "dev_precision": dev.get("precision"), "dev_recall": dev.get("recall"),
        "test_f1": test.get("f1"), "best_step": training.get("best_step"), "train_seconds": training.get("train_seconds"),
    }


def write_table(rows: list[dict], spec: SearchSpec, output_dir: str) -> None:
    """results.csv and results.md, best dev score first (test F1 shown, never used to order)."""
    ordered = sorted(rows, key=lambda r: -(r[spec.metric] if r[spec.metric] is not None else -1))
    names = list(spec.parameters)
    columns = ["trial", *names, "dev_f1", "dev_precision", "dev_recall", "test_f1", "best_step", "train_seconds", "folder"]
    buffer = text_io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for r in ordered:
        writer.writerow([r["trial"], *(r["values"][n] for n in names), *(r[c] for c in columns[1 + len(names):])])
    io.write_text(io.join(output_dir, "results.csv"), buffer.getvalue())

    def pct(value):
        return f"{100 * value:.2f}" if value is not None else "–"

    lines = [f"| trial | {' | '.join(names)} | dev F1 | dev P | dev R | test F1 | seconds |",
             "|---:|" + "---:|" * len(names) + "---:|---:|---:|---:|---:|"]
    for r in ordered:
        seconds = f"{r['train_seconds']:.0f}" if r["train_seconds"] is not None else "–"
        lines.append(f"| {r['trial']} | {' | '.join(str(r['values'][n]) for n in names)} | {pct(r['dev_f1'])} | "
                     f"{pct(r['dev_precision'])} | {pct(r['dev_recall'])} | {pct(r['test_f1'])} | {seconds} |")
    io.write_text(io.join(output_dir, "results.md"), "\n".join(lines) + "\n")


def export_best(spec: SearchSpec, best: dict, say) -> str | None:
    config = TrainConfig.from_settings(**spec.base, **best["values"], output_dir=best["folder"], export=True)
    return recipe.export_model(config, say)
