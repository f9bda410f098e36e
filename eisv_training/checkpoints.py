"""Training checkpoints that resume exactly, that a kill at any moment cannot leave unresumable, and
that resuming reads as data only.

A checkpoint is a folder `step_<N>` holding:

    model.safetensors       the unwrapped model's `state_dict()`        (main process)
    optimizer.pt            the optimizer's `state_dict()`, torch.save  (main process)
    scaler.pt               the fp16 GradScaler's state, when there is one (main process)
    extra_state.json        the caller's JSON states (LR scheduler, margin schedule, ...)
    progress.json           the caller's progress (epoch, step, best EER, history, ...)
    rng_state_<rank>.json   each process's own RNG states: python `random`, numpy's global
                            generator, torch CPU, torch CUDA per device; and `accelerator.step`
    COMPLETE                written last: the step, the number of processes, every file's size

What `--resume` trusts. `load_checkpoint` never unpickles an arbitrary object and never imports or
runs anything from the folder: JSON files are read with `json`, the weights with `safetensors`
(a JSON header and raw tensor bytes), `optimizer.pt` / `scaler.pt` with
`torch.load(weights_only=True)`, torch's restricted unpickler that builds only tensors, numbers,
strings and plain containers (sound from torch 2.6 on: CVE-2025-32434; eisv pins torch 2.11). A
folder holding any `*.pkl` (what eisv wrote before: accelerate's `save_state`) is refused, as is a
folder without `COMPLETE` or whose files' sizes differ from it. What the folder still decides is
every *value*: the weights you continue from (as with any pretrained model), the optimizer state,
the schedules' states (`restore_state_dict` checks their keys), the progress that ends up in the
model card, and how much memory loading takes. Resume only from checkpoints whose numbers you would
use.

Atomicity. Every process writes into one staging folder `.staging-step_<N>-<token>` (a token
shared by all processes); once all are done the main process fsyncs, writes `COMPLETE` (atomically)
and renames the folder to `step_<N>`. When `step_<N>` already exists (the final step saved twice)
it is first moved aside to `.replaced-step_<N>-<token>`, then the new one renamed in, then the old
one deleted; folders are renamed to `.deleting-*` before they are deleted, so no half-deleted folder
keeps a name that looks complete. So at every moment some complete checkpoint exists, and
`latest_checkpoint` also recovers a staging folder that a kill left complete before its rename.
Folders are created with the process's umask. One host, or a file system every process sees.
"""

import base64
import json
import os
import random
import re
import secrets
import shutil
from pathlib import Path
from pickle import UnpicklingError  # what torch.load(weights_only=True) raises; nothing here unpickles

import numpy as np
import torch
from accelerate.utils import DistributedType, broadcast
from safetensors import SafetensorError
from safetensors.torch import load_file, save as serialize_tensors

MARKER = "COMPLETE"
FORMAT = "eisv-checkpoint/1"
_STEP = re.compile(r"^step_(\d+)$")
_STAGING = re.compile(r"^\.staging-step_(\d+)-[0-9a-f]+$")
_LEFTOVER = re.compile(r"^(\.staging-|\.replaced-|\.deleting-|step_\d+\.tmp$)")  # `.tmp`: eisv before the staging names
PICKLE_MESSAGE = ("this checkpoint was written by an older eisv and contains pickles, which --resume does not "
                  "load: they can run code")


class CheckpointError(Exception):
    """A checkpoint folder that `load_checkpoint` refuses: pickles, incomplete, damaged, or made for
    another run (number of processes, model)."""


def complete_checkpoints(folder) -> list:
    """The `step_<N>` folders under `folder`, oldest (lowest N) first. A `step_<N>` is only ever made
    by renaming a complete staging folder, so each is complete."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _STEP.match(p.name)) and p.is_dir()]
    return [p for _, p in sorted(found)]


def latest_checkpoint(folder):
    """The newest complete checkpoint folder under `folder`, or None.

    That is `step_<N>` with the highest N, unless a kill left a complete staging folder (one with
    `COMPLETE`) of a higher step, or of the same step whose `step_<N>` was moved aside: then that
    staging folder, which `load_checkpoint` reads as it would `step_<N>`.
    """
    folder = Path(folder)
    candidates = [(int(p.name[5:]), 1, p) for p in complete_checkpoints(folder)]
    if folder.is_dir():
        candidates += [(int(m.group(1)), 0, p) for p in folder.iterdir()
                       if (m := _STAGING.match(p.name)) and (p / MARKER).is_file()]
    return max(candidates)[2] if candidates else None


def read_progress(checkpoint) -> dict:
    """The `progress` dict saved with the checkpoint."""
    return json.loads((Path(checkpoint) / "progress.json").read_text())


def save_checkpoint(accelerator, folder, step: int, model, optimizer, progress: dict, extra_state: dict = None,
                    keep: int = 2) -> Path:
    """Save `folder/step_<step>` atomically (see the module docstring) and keep the newest `keep`
    checkpoints (all when `keep` <= 0). Returns the `step_<step>` folder.

    Every process must call this, at the same point: it synchronises with `wait_for_everyone`.
    `model` and `optimizer` are the prepared ones (the model is unwrapped here; `optimizer` may be
    None). `progress` and `extra_state` must be JSON-able (tuples come back as lists), e.g.
    `{"lr_scheduler": scheduler.state_dict(), "margin_schedule": margins.state_dict()}`.
    """
    _check_supported(accelerator)
    texts = {"progress.json": _json(progress, "progress"), "extra_state.json": _json(extra_state or {}, "extra_state")}
    folder = Path(folder)
    final = folder / f"step_{step}"
    token = _shared_token(accelerator)
    staging = folder / f".staging-step_{step}-{token}"
    if accelerator.is_main_process:
        folder.mkdir(parents=True, exist_ok=True)
        staging.mkdir()
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        # As bytes written here: safetensors' save_file makes its files 0600, whatever the umask.
        weights = _plain_tensors(accelerator.unwrap_model(model).state_dict())
        _write_bytes(staging / "model.safetensors", serialize_tensors(weights, metadata={"format": "pt"}))
        if optimizer is not None:
            _torch_save(optimizer.state_dict(), staging / "optimizer.pt")
        if accelerator.scaler is not None:
            _torch_save(accelerator.scaler.state_dict(), staging / "scaler.pt")
        for name, text in texts.items():
            _write(staging / name, text)
    _write(staging / f"rng_state_{accelerator.process_index}.json", json.dumps(_rng_state(accelerator)))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        files = {p.name: p.stat().st_size for p in sorted(staging.iterdir())}
        marker = {"format": FORMAT, "step": step, "num_processes": accelerator.num_processes, "files": files}
        _write(staging / f".{MARKER}.tmp", json.dumps(marker, indent=2))
        os.replace(staging / f".{MARKER}.tmp", staging / MARKER)
        _fsync(staging)
        if final.exists():
            aside = folder / f".replaced-{final.name}-{token}"
            os.replace(final, aside)  # the complete staging folder stands in until the next line
            os.replace(staging, final)
            _fsync(folder)
            _discard(aside)
        else:
            os.replace(staging, final)
            _fsync(folder)
        for old in complete_checkpoints(folder)[:-keep] if keep > 0 else []:
            _discard(old)
        for leftover in [p for p in folder.iterdir() if _LEFTOVER.match(p.name)]:
            _discard(leftover)
    accelerator.wait_for_everyone()
    return final


def load_checkpoint(accelerator, checkpoint, model, optimizer) -> tuple:
    """Restore a `save_checkpoint` folder into the prepared `model` and `optimizer` (may be None),
    the GradScaler, every RNG and `accelerator.step`; every process calls it and reads its own RNG
    file. Returns `(progress, extra_state)`, the dicts given to `save_checkpoint`.

    Raises CheckpointError for a folder with pickles, without `COMPLETE`, with files of other sizes
    than recorded, written by another number of processes, or whose weights do not fit `model`.
    """
    _check_supported(accelerator)
    checkpoint = Path(checkpoint)
    if not checkpoint.is_dir():
        raise CheckpointError(f"{checkpoint}: not a folder")
    pickles = sorted(str(p.relative_to(checkpoint)) for p in checkpoint.rglob("*.pkl"))
    if pickles:
        raise CheckpointError(f"{checkpoint}: {PICKLE_MESSAGE} ({', '.join(pickles)})")
    marker = _read_json(checkpoint / MARKER, f"{checkpoint}: not a complete eisv checkpoint (no {MARKER} file)")
    if (not isinstance(marker, dict) or marker.get("format") != FORMAT or not isinstance(marker.get("files"), dict)
            or not all(isinstance(size, int) for size in marker["files"].values())):
        raise CheckpointError(f"{checkpoint}/{MARKER}: not written by this eisv ({FORMAT})")
    for name, size in marker["files"].items():
        path = checkpoint / name
        if Path(name).name != name or not path.is_file() or path.stat().st_size != size:
            raise CheckpointError(f"{checkpoint}: {name} is missing or was changed since the checkpoint was written")
    if marker.get("num_processes") != accelerator.num_processes:
        raise CheckpointError(f"{checkpoint}: written by {marker.get('num_processes')} processes, resumed with "
                              f"{accelerator.num_processes}; resume with as many as the run that wrote it")

    try:
        accelerator.unwrap_model(model).load_state_dict(load_file(str(checkpoint / "model.safetensors")))
    except (SafetensorError, RuntimeError, OSError) as error:  # a damaged file, or weights of another model
        raise CheckpointError(f"{checkpoint}/model.safetensors: {error}") from None
    if optimizer is not None:
        try:
            optimizer.load_state_dict(_torch_load(checkpoint / "optimizer.pt"))
        except (KeyError, TypeError, ValueError) as error:  # the state of another optimizer or model
            raise CheckpointError(f"{checkpoint}/optimizer.pt: does not fit this optimizer ({error})") from None
    if accelerator.scaler is not None:
        if not (checkpoint / "scaler.pt").is_file():
            raise CheckpointError(f"{checkpoint}: no scaler.pt, but this run uses fp16 (a GradScaler)")
        accelerator.scaler.load_state_dict(_torch_load(checkpoint / "scaler.pt"))
    progress, extra_state = _read_json(checkpoint / "progress.json"), _read_json(checkpoint / "extra_state.json")
    if not isinstance(progress, dict) or not isinstance(extra_state, dict):
        raise CheckpointError(f"{checkpoint}: progress.json and extra_state.json must each hold a JSON object")
    rng_file = checkpoint / f"rng_state_{accelerator.process_index}.json"
    try:  # last, so that nothing above draws from the restored generators
        _set_rng_state(accelerator, _read_json(rng_file))
    except (KeyError, TypeError, ValueError, IndexError, RuntimeError) as error:
        raise CheckpointError(f"{rng_file}: not an RNG state ({error})") from None
    return progress, extra_state


def restore_state_dict(obj, state: dict, name: str):
    """`obj.load_state_dict(state)` after checking that `state` has exactly the keys of
    `obj.state_dict()`: LR schedulers set their attributes from it (`__dict__.update`), so a crafted
    key (e.g. "step") would replace a method. Raises CheckpointError naming `name`."""
    expected = set(obj.state_dict())
    if not isinstance(state, dict) or set(state) != expected:
        got = sorted(state) if isinstance(state, dict) else type(state).__name__
        raise CheckpointError(f"checkpoint state {name!r} has keys {got}, expected {sorted(expected)}")
    obj.load_state_dict(state)


# -- helpers -----------------------------------------------------------------------------------


def _check_supported(accelerator):
    if accelerator.distributed_type in (DistributedType.DEEPSPEED, DistributedType.FSDP, DistributedType.MEGATRON_LM):
        raise NotImplementedError(f"eisv checkpoints support one process or DDP, not {accelerator.distributed_type}")


def _shared_token(accelerator) -> str:
    """Random hex, the same in every process (the main one's). From os.urandom: the RNGs that a
    resume restores are not touched."""
    token = torch.tensor(list(secrets.token_bytes(6)), dtype=torch.int64, device=accelerator.device)
    if accelerator.num_processes > 1:
        token = broadcast(token, from_process=0)
    return bytes(token.cpu().tolist()).hex()


def _json(value, name) -> str:
    try:
        return json.dumps(value, indent=2)
    except (TypeError, ValueError) as error:
        raise TypeError(f"save_checkpoint: {name} must be JSON-able: {error}") from None


def _plain_tensors(state: dict) -> dict:
    """CPU, contiguous tensors that share no storage, as safetensors requires (tied or flattened
    weights are copied)."""
    seen, plain = set(), {}
    for key, tensor in state.items():
        tensor = tensor.detach().cpu().contiguous()
        storage = tensor.untyped_storage().data_ptr()
        if storage in seen and tensor.numel():
            tensor = tensor.clone()
        seen.add(tensor.untyped_storage().data_ptr())
        plain[key] = tensor
    return plain


def _rng_state(accelerator) -> dict:
    version, internal, gauss = random.getstate()
    name, keys, position, has_gauss, cached = np.random.get_state()
    state = {"accelerator_step": accelerator.step, "python": [version, list(internal), gauss],
             "numpy": [name, keys.tolist(), position, has_gauss, cached],
             "torch_cpu": _bytes(torch.get_rng_state())}
    if torch.cuda.is_available():
        state["torch_cuda"] = [_bytes(s) for s in torch.cuda.get_rng_state_all()]
    return state


def _set_rng_state(accelerator, state: dict):
    version, internal, gauss = state["python"]
    random.setstate((int(version), tuple(int(k) for k in internal), None if gauss is None else float(gauss)))
    name, keys, position, has_gauss, cached = state["numpy"]
    np.random.set_state((str(name), np.array(keys, dtype=np.uint32), int(position), int(has_gauss), float(cached)))
    torch.set_rng_state(_tensor(state["torch_cpu"]))
    if torch.cuda.is_available() and "torch_cuda" in state:
        for device, saved in enumerate(state["torch_cuda"][: torch.cuda.device_count()]):
            torch.cuda.set_rng_state(_tensor(saved), device)
    accelerator.step = int(state["accelerator_step"])


def _bytes(tensor) -> str:
    return base64.b64encode(tensor.cpu().numpy().tobytes()).decode("ascii")


def _tensor(text: str):
    return torch.frombuffer(bytearray(base64.b64decode(text, validate=True)), dtype=torch.uint8)


def _write(path, text: str):
    _write_bytes(path, text.encode("utf-8"))


def _write_bytes(path, data: bytes):
    with open(path, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def _torch_save(state, path):
    with open(path, "wb") as handle:
        torch.save(state, handle)
        handle.flush()
        os.fsync(handle.fileno())


def _torch_load(path):
    if not Path(path).is_file():
        raise CheckpointError(f"{path}: missing")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except UnpicklingError as error:  # anything but tensors and plain containers, or not torch.save's format
        reason = [line for line in str(error).splitlines() if line.startswith("WeightsUnpickler error")]
        raise CheckpointError(f"{path}: refused by torch.load(weights_only=True), which builds only tensors and "
                              f"plain containers{': ' + reason[0] if reason else ''}") from None
    except (RuntimeError, EOFError, OSError, ValueError) as error:
        raise CheckpointError(f"{path}: damaged ({error})") from None


def _read_json(path, missing: str = None):
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(missing or f"{path}: missing") from None
    except (ValueError, UnicodeDecodeError) as error:
        raise CheckpointError(f"{path}: not JSON ({error})") from None


def _fsync(path):
    """fsync a file, or a folder (its entries: renames and new files)."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _discard(path):
    """Delete a folder, first renaming it to `.deleting-*` (atomic) so a kill half-way never leaves a
    partial folder under a name that `latest_checkpoint` would pick."""
    path = Path(path)
    if not path.name.startswith(".deleting-"):
        trash = path.with_name(f".deleting-{path.name.lstrip('.')}")
        try:
            os.replace(path, trash)
        except FileNotFoundError:
            return
        except OSError:  # a leftover `.deleting-` of the same name is in the way
            shutil.rmtree(trash, ignore_errors=True)
            os.replace(path, trash)
        path = trash
    shutil.rmtree(path, ignore_errors=True)
