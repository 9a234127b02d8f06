"""Load a pipeline YAML file and its environment overlay into a validated PipelineSpec."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Iterable

from pydantic import ValidationError

from pipelines.errors import ConfigError, Problem, did_you_mean
from pipelines.input_names import check_input_names
from pipelines.pydantic_errors import problems_from
from pipelines.refs import ParamRef, RefSyntaxError, parse_ref, parse_value, refs_in
from pipelines.spec import Defaults, EnvSettings, Parameter, PipelineSpec, check_param_value, parse_param_text
from pipelines.values import split_param
from pipelines.yamlsource import SourceMap, format_path, load_yaml

TOP_KEYS = ("name", "description", "parameters", "defaults", "steps")
OVERLAY_KEYS = ("parameters", "defaults", "steps", "tracking_uri", "sagemaker")
# keys an env file might be expected to take, and why it does not
NOT_OVERLAY_KEYS = {
    "registry": "an env file does not choose the model registry: it follows the env (SageMaker Model Registry in "
                "sagemaker.region on a cloud env, else the MLflow store of tracking_uri, or files under the state "
                "folder with tracking_uri: none), and each register step names its model_group; remove this key",
}


def find_repo_root(config: Path) -> Path:
    """The nearest folder above the config holding .git or pyproject.toml (else the config's folder)."""
    for folder in config.resolve().parents:
        if (folder / ".git").exists() or (folder / "pyproject.toml").exists():
            return folder
    return config.resolve().parent


def _shown(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def load_pipeline(config: str | Path, env: str = "local", params: Iterable[str] = ()) -> PipelineSpec:
    """Read, merge, validate and lint a pipeline; raise ConfigError listing every problem found."""
    from pipelines.graph import lint  # graph imports the step registry; keep module import light

    config = Path(config)
    shown = _shown(config)
    smap = SourceMap(shown)
    raw = load_yaml(config, shown, smap)
    if not isinstance(raw, dict):
        raise ConfigError([Problem(shown, 1, "", "a pipeline file is a mapping with name, parameters, "
                                                   "defaults and steps")])
    problems = [smap.problem((key,), f"unknown key '{key}'{did_you_mean(str(key), TOP_KEYS)}")
                for key in raw if key not in TOP_KEYS]
    settings = _apply_overlay(raw, config, env, smap, problems)
    repo_root = find_repo_root(config)
    parameters = _parameters(raw.get("parameters"), smap, problems)
    defaults = _validate(Defaults, raw.get("defaults") or {}, ("defaults",), smap, problems)
    steps, sites = _steps(raw.get("steps"), smap, problems)
    if problems:
        raise ConfigError(problems)
    values = _param_values(parameters, params, shown, problems)
    try:
        spec = PipelineSpec(
            name=raw.get("name", ""), description=raw.get("description") or "", parameters=parameters,
            defaults=defaults, steps=tuple(step.settle(defaults) for step in steps), env=env, settings=settings, source_file=shown,
            repo_root=str(repo_root), param_values=values,
        )
    except ValidationError as exc:
        raise ConfigError(problems + problems_from(exc, PipelineSpec, (), smap.problem)) from None
    problems += lint(spec, sites, smap)
    problems += check_input_names(spec, smap)
    if problems:
        raise ConfigError(problems)
    return spec


def env_dirs(config: Path) -> list[Path]:
    """Where a pipeline's env overlays are looked up: `env/` beside the pipeline file, then the
    repository root's `configs/env/` (so a pipeline kept outside `configs/` keeps its overlays)."""
    beside = config.resolve().parent / "env"
    at_root = find_repo_root(config) / "configs" / "env"
    return [beside] if beside == at_root else [beside, at_root]


def _apply_overlay(raw: dict, config: Path, env: str, smap: SourceMap, problems: list[Problem]) -> EnvSettings:
    folders = env_dirs(config)
    found = [d / f"{env}.yaml" for d in folders if (d / f"{env}.yaml").is_file()]
    if not found:
        if env == "local":
            return EnvSettings()
        known = sorted({p.stem for d in folders if d.is_dir() for p in d.glob("*.yaml")})
        looked = " nor ".join(_shown(d / f"{env}.yaml") for d in folders)
        missing = f"neither {looked} exists" if len(folders) > 1 else f"{looked} does not exist"
        hint = did_you_mean(env, known) if known else \
            f"; create {_shown(folders[-1] / f'{env}.yaml')} (keys: {', '.join(OVERLAY_KEYS)})"
        raise ConfigError([Problem(_shown(config), None, "--env", f"no environment '{env}' ({missing}){hint}")])
    overlay_file = found[0]
    overlay = load_yaml(overlay_file, _shown(overlay_file), smap, prefix=("<overlay>",)) or {}
    if not isinstance(overlay, dict):
        raise ConfigError([smap.problem(("<overlay>",), "an environment file is a mapping", "")])
    problems += _unknown_overlay_keys(overlay, smap, ("<overlay>",))
    for key, value in overlay.items():
        where = ("<overlay>", key)
        if key == "parameters":
            _overlay_parameters(raw, value, smap, problems)
        elif key == "defaults":
            raw["defaults"] = _deep_merge(raw.get("defaults") or {}, value, where, ("defaults",), smap)
        elif key == "steps":
            _overlay_steps(raw, value, smap, problems)
    settings_raw = {k: v for k, v in overlay.items() if k in EnvSettings.model_fields}
    for key in settings_raw:
        smap.rebase(("<overlay>", key), (key,))
    return _validate(EnvSettings, settings_raw, (), smap, problems) or EnvSettings()


def load_env_settings(env: str, env_dir: Path) -> EnvSettings:
    """An environment's backend settings (tracking store, registry, AWS) without a pipeline."""
    overlay_file = env_dir / f"{env}.yaml"
    shown = _shown(overlay_file)
    if not overlay_file.exists():
        if env == "local":
            return EnvSettings()
        known = sorted(p.stem for p in env_dir.glob("*.yaml")) if env_dir.is_dir() else []
        raise ConfigError([Problem(shown, None, "--env", f"no environment '{env}' ({shown} does not exist)"
                                                         f"{did_you_mean(env, known)}")])
    smap = SourceMap(shown)
    overlay = load_yaml(overlay_file, shown, smap) or {}
    if not isinstance(overlay, dict):
        raise ConfigError([Problem(shown, 1, "", "an environment file is a mapping")])
    problems = _unknown_overlay_keys(overlay, smap, ())
    settings = _validate(EnvSettings, {k: v for k, v in overlay.items() if k in EnvSettings.model_fields},
                         (), smap, problems)
    if problems:
        raise ConfigError(problems)
    return settings


def _unknown_overlay_keys(overlay: dict, smap: SourceMap, prefix: tuple) -> list[Problem]:
    """An env file's top-level keys that it does not take (typed blocks report their own unknown keys)."""
    return [smap.problem(prefix + (key,), f"unknown key '{key}': {NOT_OVERLAY_KEYS[key]}" if key in NOT_OVERLAY_KEYS
                         else f"unknown key '{key}'{did_you_mean(str(key), OVERLAY_KEYS)}", str(key))
            for key in overlay if key not in OVERLAY_KEYS]


def _overlay_parameters(raw: dict, overrides: Any, smap: SourceMap, problems: list[Problem]) -> None:
    declared = raw.get("parameters") or {}
    if not isinstance(overrides, dict):
        problems.append(smap.problem(("<overlay>", "parameters"), "expected a mapping of name: default", "parameters"))
        return
    for name, value in overrides.items():
        if name not in declared:
            problems.append(smap.problem(("<overlay>", "parameters", name),
                                         f"unknown parameter '{name}'{did_you_mean(name, declared)}",
                                         f"parameters.{name}"))
        elif isinstance(declared[name], dict):
            declared[name]["default"] = value
            smap.rebase(("<overlay>", "parameters", name), ("parameters", name, "default"))


def _overlay_steps(raw: dict, overrides: Any, smap: SourceMap, problems: list[Problem]) -> None:
    steps: list[Any] = raw["steps"] if isinstance(raw.get("steps"), list) else []
    index = {str(s.get("name")): i for i, s in enumerate(steps) if isinstance(s, dict)}
    if not isinstance(overrides, dict):
        problems.append(smap.problem(("<overlay>", "steps"), "expected a mapping of step name: settings", "steps"))
        return
    for name, patch in overrides.items():
        if name not in index:
            problems.append(smap.problem(("<overlay>", "steps", name),
                                         f"no step named '{name}'{did_you_mean(str(name), index)}", f"steps.{name}"))
        elif isinstance(patch, dict):
            i = index[name]
            steps[i] = _deep_merge(steps[i], patch, ("<overlay>", "steps", name), ("steps", i), smap)


def _deep_merge(base: Any, patch: Any, patch_path: tuple, base_path: tuple, smap: SourceMap) -> Any:
    smap.rebase(patch_path, base_path)
    if not (isinstance(base, dict) and isinstance(patch, dict)):
        return copy.deepcopy(patch)
    merged = dict(base)
    for key, value in patch.items():
        merged[key] = _deep_merge(base.get(key), value, patch_path + (key,), base_path + (key,), smap)
    return merged


def _validate(model: Any, data: Any, base: tuple, smap: SourceMap, problems: list[Problem]) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems.extend(problems_from(exc, model, base, smap.problem))
        return None


def _parameters(raw: Any, smap: SourceMap, problems: list[Problem]) -> dict[str, Parameter]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        problems.append(smap.problem(("parameters",), "expected a mapping of name: {type, default}"))
        return {}
    out = {}
    for name, body in raw.items():
        if not _referable(name):
            problems.append(smap.problem(("parameters", name), f"{name!r} could never be referenced as "
                                         "${params.NAME}: a parameter name uses ASCII letters, digits, _ and -, "
                                         "and starts with a letter or _"))
            continue
        param = _validate(Parameter, body, ("parameters", name), smap, problems)
        if param is not None:
            out[name] = param
    return out


def _referable(name: Any) -> bool:
    """Whether `${params.<name>}` refers to this parameter: the reference syntax decides what a name is."""
    try:
        return isinstance(name, str) and parse_ref(f"params.{name}") == ParamRef(name)
    except RefSyntaxError:
        return False


def _param_values(parameters: dict[str, Parameter], overrides: Iterable[str], shown: str,
                  problems: list[Problem]) -> dict[str, Any]:
    values = {name: p.default for name, p in parameters.items()}
    for text in overrides:
        name, value = split_param(text) or ("", "")
        if not name:
            problems.append(Problem(shown, None, "--param", f"'{text}' should look like key=value"))
        elif name not in parameters:
            problems.append(Problem(shown, None, "--param",
                                    f"unknown parameter '{name}'{did_you_mean(name, parameters)}"))
        else:
            try:
                values[name] = parse_param_text(parameters[name], value)
            except ValueError as exc:
                problems.append(Problem(shown, None, f"--param {name}", str(exc)))
    for name, value in values.items():
        if value is None:
            problems.append(Problem(shown, None, f"parameters.{name}",
                                    f"has no default; pass --param {name}=VALUE"))
        else:
            check_param_value(parameters[name], value)
    if problems:
        raise ConfigError(problems)
    return values


def _steps(raw: Any, smap: SourceMap, problems: list[Problem]) -> tuple[list[Any], list[tuple]]:
    from steps import STEP_TYPES

    if not isinstance(raw, list) or not raw:
        problems.append(smap.problem(("steps",), "expected a non-empty list of steps"))
        return [], []
    steps: list[Any] = []
    sites: list[tuple] = []
    for i, body in enumerate(raw):
        where = ("steps", i)
        if not isinstance(body, dict):
            problems.append(smap.problem(where, "each step is a mapping with at least name and type"))
            continue
        label = ("steps", body["name"]) if isinstance(body.get("name"), str) else where

        def locate(path: tuple, message: str, label: tuple = label) -> Problem:
            return smap.problem(path, message, format_path(label + path[2:]))

        kind = body.get("type")
        if not isinstance(kind, str) or kind not in STEP_TYPES:
            message = "missing 'type'" if kind is None else f"unknown step type '{kind}'"
            problems.append(locate(where + ("type",), message + did_you_mean(str(kind), STEP_TYPES)))
            continue
        parsed = _parse_refs(body, where, locate, problems, sites, body.get("name"))
        step = _validate_step(STEP_TYPES[kind], parsed, where, locate, problems)
        if step is not None:
            steps.append(step)
    return steps, sites


def _validate_step(model: Any, body: dict, where: tuple, locate: Any, problems: list[Problem]) -> Any:
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        problems.extend(problems_from(exc, model, where, locate))
        return None


def _parse_refs(value: Any, path: tuple, locate: Any, problems: list[Problem], sites: list, step: Any) -> Any:
    """Parse `${...}` in every string of a step; remember where each reference sits."""
    if isinstance(value, dict):
        return {k: _parse_refs(v, path + (k,), locate, problems, sites, step) for k, v in value.items()}
    if isinstance(value, list):
        return [_parse_refs(v, path + (i,), locate, problems, sites, step) for i, v in enumerate(value)]
    try:
        parsed = parse_value(value)
    except RefSyntaxError as exc:
        problems.append(locate(path, str(exc)))
        return value
    sites.extend((step, ref, path, locate) for ref in refs_in(parsed))
    return parsed
