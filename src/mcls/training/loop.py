"""One training loop for every stage (SPEC §4), driven by a stage spec and a task.

    Trainer(spec, out_dir).run()      # or: mcls train --spec JSON --out DIR

Per optimizer step: collate this process's shard of the global batch, `task.loss` gives
(loss_sum, normalizer); both are summed over DDP processes, the loss optimised is
`sum(loss_sum) / sum(normalizer)` (CE: summed over target tokens / number of target tokens),
gradients are clipped by global norm, the lr follows warm-up + linear decay, AdamW steps.

Checkpoints (`checkpoints/last.pt`) are written atomically every `checkpoint_every` steps and
at each epoch end, after validation; `checkpoints/best.pt` whenever the validation loss
improves (written before last.pt, so a kill between the two loses nothing). A run started on a
directory holding `last.pt` of the same spec resumes exactly where it stopped: model,
optimizer, schedule, every RNG and the sampler position are restored, and `train.jsonl` is cut
back to the checkpoint's step. At the end, `model.json` (summary) and then `final.pt` (the
selected checkpoint, weights only) are written.

DDP: started by `torchrun`; gloo on CPU, nccl on CUDA. `batch_size`/`max_tokens` are global
(the paper's batch 8 is 8 in total); every rank builds the same batch list and takes its shard.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import random
import resource
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from .. import code_version
from ..atomic import write_json, write_text
from ..errors import McLSError
from . import checkpoint as ckpt_io
from .data import BucketSampler, SplitData, iterate_batches, move_batch, padding_waste, shard
from .optim import WarmupLinearDecay, build_optimizer
from .spec import numeric_diff, parse_spec
from .tasks import make_task, model_config_dict

log = logging.getLogger(__name__)


def vocab_size(path: str | Path) -> int:
    """Number of entries of a vocabulary TSV (ids are line numbers)."""
    p = Path(path)
    if not p.exists():
        raise McLSError(f"vocabulary {p} not found")
    with open(p, encoding="utf-8") as fh:
        n = sum(1 for line in fh if line.rstrip("\n"))
    if n < 3:
        raise McLSError(f"vocabulary {p} has {n} entries; expected the specials <pad> </s> <unk> and more")
    return n


def open_features(path: str | None):
    if path is None:
        return None
    from ..video.store import FeatureStore

    return FeatureStore(path)


def open_encoded(path: str):
    from ..encoded import EncodedSplit

    return EncodedSplit(path)


class _Dist:
    """Process-group facts; world 1 when not started by torchrun."""

    def __init__(self, device: str):
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        self.owns_group = False
        if self.world > 1 and not dist.is_initialized():
            backend = "nccl" if device.startswith("cuda") else "gloo"
            if device.startswith("cuda"):
                torch.cuda.set_device(self.local_rank)
            dist.init_process_group(backend)
            self.owns_group = True
        if self.world > 1:
            self.rank, self.world = dist.get_rank(), dist.get_world_size()

    @property
    def main(self) -> bool:
        return self.rank == 0

    def all_sum(self, t: torch.Tensor) -> torch.Tensor:
        if self.world > 1:
            dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return t

    def gather(self, obj: Any) -> list[Any]:
        if self.world == 1:
            return [obj]
        out: list[Any] = [None] * self.world
        dist.all_gather_object(out, obj)
        return out

    def broadcast(self, obj: Any) -> Any:
        if self.world == 1:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()

    def close(self) -> None:
        if self.owns_group and dist.is_initialized():
            dist.destroy_process_group()


def _device(spec_device: str, d: _Dist) -> torch.device:
    if spec_device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise McLSError(f"spec key 'device': {spec_device!r} but CUDA is not available on this machine")
        if d.world > 1:
            return torch.device("cuda", d.local_rank)
    return torch.device(spec_device)


class Trainer:
    """Train one stage. `task` and `features` may be given (tests, custom tasks); otherwise the
    task comes from the spec and the features from `data.features` (`mcls.video.store`).

    `resume`: "auto" resumes from `checkpoints/last.pt` when it was written with the same spec
    (up to device/threads/workers/log_every/bf16) and otherwise starts afresh, moving the old
    checkpoints to `checkpoints.stale/`; "require" fails unless it can resume; "never" starts afresh.
    """

    def __init__(self, spec: dict, out_dir: str | Path, task=None, features=None,
                 valid_features=None, resume: str = "auto"):
        self.spec = parse_spec(spec)
        self.out = Path(out_dir)
        self.ckpt_dir = self.out / "checkpoints"
        self.log_path = self.out / "train.jsonl"
        if resume not in ("auto", "require", "never"):
            raise ValueError(f"resume must be auto, require or never, got {resume!r}")
        self.resume = resume
        self.task = task if task is not None else make_task(self.spec)
        self._features = features
        self._valid_features = valid_features if valid_features is not None else features
        self.code_version = code_version()  # git is asked once, not at every checkpoint

    # ---------------------------------------------------------------- setup
    def _setup(self) -> None:
        s = self.spec
        self.dist = _Dist(s["device"])
        self.device = _device(s["device"], self.dist)
        torch.set_num_threads(s["threads"])
        self.bf16 = self.device.type == "cuda" and s["bf16"]
        d = s["data"]
        self.src_vocab = vocab_size(d["src_vocab"])
        self.tgt_vocab = vocab_size(d["tgt_vocab"])
        feats = self._features if self._features is not None else open_features(d["features"])
        vfeats = self._valid_features if self._valid_features is not None else feats
        self.video_dim = int(feats.dim) if feats is not None else 0
        fields = self.task.fields
        sizes = {"src": self.src_vocab, "tgt": self.tgt_vocab}
        vocab_sizes = {k: sizes[v] for k, v in self.task.vocab_keys().items()}
        common = dict(fields=fields, max_video_rows=d["max_video_rows"], vocab_sizes=vocab_sizes,
                      missing=d["missing_features"])
        self.train_data = SplitData(open_encoded(d["train"]), features=feats, name=d["train"], **common)
        self.valid_data = (SplitData(open_encoded(d["valid"]), features=vfeats, name=d["valid"], **common)
                           if d["valid"] is not None else None)
        o = s["optim"]
        keys = list(fields)
        self.sampler = BucketSampler([self.train_data.lengths(k) for k in keys], seed=s["seed"],
                                     batch_size=o["batch_size"], max_tokens=o["max_tokens"])
        if self.valid_data is not None:
            vs = BucketSampler([self.valid_data.lengths(k) for k in keys], seed=s["seed"],
                               batch_size=o["batch_size"], max_tokens=o["max_tokens"])
            self.valid_batches = sorted(vs.batches(0), key=lambda b: int(b[0]))
        self.total_steps = self._total_steps()

        # model: the same initial weights on every rank (DDP also broadcasts rank 0's)
        torch.manual_seed(s["seed"])
        np.random.seed(s["seed"] & 0xFFFFFFFF)
        random.seed(s["seed"])
        self.model = self.task.build_model(self.src_vocab, self.tgt_vocab, self.video_dim).to(self.device)
        self.task.to(self.device)
        self.model_meta = {"name": s["model"], "sizes": dict(s["sizes"]), "switches": dict(s["switches"]),
                           "src_vocab": self.src_vocab,
                           "tgt_vocab": self.tgt_vocab, "video_dim": self.video_dim,
                           "config": model_config_dict(self.model)}
        self.optimizer = build_optimizer(self.model.parameters(), o["lr"], o["betas"], o["eps"], o["weight_decay"])
        self.scheduler = WarmupLinearDecay(self.optimizer, o["lr"], o["warmup_steps"], self.total_steps)
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        # per-rank stream for dropout etc. (replaced by the checkpoint's on resume)
        torch.manual_seed(s["seed"] + 7919 * self.dist.rank)

        self.step, self.epoch, self.position = 0, 0, 0
        self.best: dict[str, Any] = {"valid_loss": None, "step": None, "epoch": None}
        self.valid_loss: float | None = None
        self._load_or_start()
        if self.dist.world > 1:
            from torch.nn.parallel import DistributedDataParallel as DDP

            ids = [self.device.index] if self.device.type == "cuda" else None
            self.ddp = DDP(self.model, device_ids=ids)
        else:
            self.ddp = self.model

    def _total_steps(self) -> int:
        o = self.spec["optim"]
        if o["max_tokens"] is None:
            per = -(-len(self.train_data) // o["batch_size"])
            total = per * o["epochs"]
        else:
            total = sum(self.sampler.num_batches(e) for e in range(o["epochs"]))
        return min(total, o["max_steps"]) if o["max_steps"] else total

    def _load_or_start(self) -> None:
        last = self.ckpt_dir / "last.pt"
        found = last.exists() if self.dist.main else False
        found = self.dist.broadcast(found)
        state = None
        if found and self.resume != "never":
            state = ckpt_io.load(last)
            self.dist.barrier()  # every rank has read it before rank 0 may move it aside
            diff = numeric_diff(state["spec"], self.spec)
            if diff:
                if self.resume == "require":
                    raise McLSError(f"{last} was written with a different spec (keys: {', '.join(diff)}); "
                                    "cannot resume")
                log.warning("%s was written with a different spec (keys: %s): starting afresh; old "
                            "checkpoints moved to %s", last, ", ".join(diff), self.ckpt_dir.with_name("checkpoints.stale"))
                state = None
        elif self.resume == "require":
            raise McLSError(f"--resume require: no checkpoint {last} to resume from")
        if state is None:
            if self.dist.main:
                if self.ckpt_dir.exists():
                    stale = self.ckpt_dir.with_name("checkpoints.stale")
                    shutil.rmtree(stale, ignore_errors=True)
                    os.replace(self.ckpt_dir, stale)
                self.ckpt_dir.mkdir(parents=True, exist_ok=True)
                write_text(self.log_path, "")
            self.dist.barrier()
            return
        if state["code_version"] != self.code_version:
            log.warning("resuming a checkpoint of code version %s with code version %s",
                        state["code_version"], self.code_version)
        self.model.load_state_dict(state["model"], strict=True)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.step, self.epoch = int(state["step"]), int(state["epoch"])
        self.position = int(state["sampler"]["position"])
        self.best = dict(state["best"])
        self.valid_loss = state["valid_loss"]
        rngs = state["rng"]
        if len(rngs) == self.dist.world:
            ckpt_io.set_rng_state(rngs[self.dist.rank])
        else:
            log.warning("checkpoint written by %d processes, resuming with %d: RNG streams reseeded "
                        "(dropout masks differ from an uninterrupted run)", len(rngs), self.dist.world)
            torch.manual_seed(self.spec["seed"] + 7919 * self.dist.rank + 104729 * self.step)
        if self.dist.main:
            ckpt_io.remove_stale_temporaries(self.ckpt_dir)
            self._truncate_log(self.step, self.epoch if self.position == 0 else None)
        log.info("resumed from %s at step %d (epoch %d, batch %d)", last, self.step, self.epoch, self.position)
        self.dist.barrier()

    def _truncate_log(self, step: int, next_epoch: int | None) -> None:
        """Keep the records up to the checkpoint's step; with the checkpoint at an epoch start
        (`next_epoch`), drop that epoch's header too (it is written again)."""
        if not self.log_path.exists():
            write_text(self.log_path, "")
            return
        keep = []
        for line in self.log_path.read_text(encoding="utf-8").splitlines():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut by the kill
            if rec.get("step", 0) > step:
                continue
            if next_epoch is not None and rec.get("event") == "epoch" and rec.get("epoch", -1) >= next_epoch:
                continue
            keep.append(line)
        write_text(self.log_path, "".join(x + "\n" for x in keep))

    # ---------------------------------------------------------------- pieces
    def _autocast(self):
        if self.bf16:
            return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _log(self, rec: dict[str, Any]) -> None:
        if not self.dist.main:
            return
        with open(self.log_path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(rec) + "\n")
            fh.flush()

    def _state(self) -> dict[str, Any]:
        rngs = self.dist.gather(ckpt_io.rng_state())
        return {
            "format": ckpt_io.TRAIN_FORMAT,
            "model": self.model.state_dict(),
            "model_meta": self.model_meta,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "rng": rngs,
            "sampler": {"epoch": self.epoch, "position": self.position, "seed": self.spec["seed"],
                        "world": self.dist.world},
            "step": self.step,
            "epoch": self.epoch,
            "best": dict(self.best),
            "valid_loss": self.valid_loss,
            "spec": self.spec,
            "code_version": self.code_version,
            "total_steps": self.total_steps,
        }

    def _save(self, improved: bool) -> None:
        state = self._state()  # collective: every rank takes part
        if self.dist.main:
            if improved:
                ckpt_io.save(self.ckpt_dir / "best.pt", state)
            ckpt_io.save(self.ckpt_dir / "last.pt", state)
        self.dist.barrier()

    @torch.no_grad()
    def validate(self) -> float:
        """Loss of the task on the validation split (sum over it / sum of normalizers)."""
        self.model.eval()
        acc = torch.zeros(2, dtype=torch.float64, device=self.device)
        mine = self.valid_batches[self.dist.rank::self.dist.world]
        for batch in iterate_batches(self.valid_data, mine, self.spec["data"]["workers"]):
            batch = move_batch(batch, self.device)
            with self._autocast():
                loss_sum, norm = self.task.loss(self.model, batch)
            acc[0] += loss_sum.double()
            acc[1] += torch.as_tensor(norm, dtype=torch.float64, device=self.device)
        self.dist.all_sum(acc)
        self.model.train()
        return float(acc[0] / acc[1])

    def _end_of_interval(self, improved_check: bool) -> None:
        """Validate (when there is a validation split), update best, checkpoint."""
        improved = False
        if improved_check and self.valid_data is not None:
            t0 = time.perf_counter()
            self.valid_loss = self.validate()
            best = self.best["valid_loss"]
            improved = best is None or self.valid_loss < best
            if improved:
                self.best = {"valid_loss": self.valid_loss, "step": self.step, "epoch": self.epoch}
            self._log({"event": "valid", "step": self.step, "epoch": self.epoch, "valid_loss": self.valid_loss,
                       "best": improved, "seconds": round(time.perf_counter() - t0, 3)})
            log.info("step %d: valid loss %.4f%s", self.step, self.valid_loss, " (best)" if improved else "")
        self._save(improved)

    # ---------------------------------------------------------------- main loop
    def run(self) -> dict[str, Any]:
        try:
            self._setup()
            t_start = time.perf_counter()
            o, s = self.spec["optim"], self.spec
            world, rank = self.dist.world, self.dist.rank
            params, clip = self.params, o["clip_norm"]
            log.info("training %s (stage %s, task %s): %d rows, %d steps total, world %d, device %s",
                     s["model"], s["stage"], s["task"], len(self.train_data), self.total_steps, world, self.device)
            self.model.train()
            # per-interval accumulators: loss_sum, normalizer, text real/padded, video real/padded, samples, grad norm
            acc = torch.zeros(8, dtype=torch.float64, device=self.device)
            t_log, steps_in_log = time.perf_counter(), 0
            self._cpu_log = time.process_time()  # process CPU time at the last record
            self._data_seconds = 0.0  # time this process waited for batches (loading + collate)
            while self.step < self.total_steps and self.epoch < o["epochs"]:
                batches = self.sampler.batches(self.epoch)
                if self.position == 0:
                    self._log({"event": "epoch", "step": self.step, "epoch": self.epoch, "batches": len(batches),
                               "pad_waste": round(self.sampler.padding_waste(self.epoch), 5),
                               "oversized": self.sampler.oversized(self.epoch)})
                todo = [shard(b, rank, world) for b in batches[self.position:]]
                loader = iterate_batches(self.train_data, [p for p, _ in todo], s["data"]["workers"],
                                         pin_memory=self.device.type == "cuda")
                epoch_done = True
                for _, weight in todo:
                    t_wait = time.perf_counter()
                    batch = next(loader)
                    self._data_seconds += time.perf_counter() - t_wait
                    st = batch.pop("stats")
                    batch = move_batch(batch, self.device)
                    with self._autocast():
                        loss_sum, norm = self.task.loss(self.ddp, batch)
                    stats = torch.tensor([0.0, 0.0, st["text_real"], st["text_padded"], st["video_real"],
                                          st["video_padded"], st["samples"], 0.0], dtype=torch.float64,
                                         device=self.device)
                    stats[0] = loss_sum.detach().double()
                    stats[1] = torch.as_tensor(norm, dtype=torch.float64, device=self.device)
                    stats *= weight
                    self.dist.all_sum(stats)
                    # world * local / global: DDP averages gradients over ranks, so the update is
                    # the gradient of sum(loss_sum) / sum(normalizer) over the global batch.
                    loss = loss_sum * (weight * world / stats[1].clamp_min(1.0)).to(loss_sum.dtype)
                    self.optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    gnorm = torch.nn.utils.clip_grad_norm_(params, clip if clip > 0 else float("inf"))
                    self.scheduler.step()
                    self.optimizer.step()
                    self.step += 1
                    self.position += 1
                    stats[7] = gnorm.double()
                    acc += stats
                    steps_in_log += 1
                    if self.step % s["log_every"] == 0 or self.step == self.total_steps:
                        t_log = self._log_train(acc, steps_in_log, t_log)
                        acc.zero_()
                        steps_in_log = 0
                    if self.step >= self.total_steps:
                        epoch_done = self.position == len(batches)
                        break
                    if self.step % s["checkpoint_every"] == 0 and self.position < len(batches):
                        t0, c0 = time.perf_counter(), time.process_time()
                        self._save(improved=False)
                        t_log += time.perf_counter() - t0  # throughput counts training time only
                        self._cpu_log += time.process_time() - c0
                loader.close()  # stops DataLoader workers when the run ends mid-epoch
                if epoch_done:
                    self.epoch += 1
                    self.position = 0
                t0, c0 = time.perf_counter(), time.process_time()
                self._end_of_interval(improved_check=True)
                t_log += time.perf_counter() - t0
                self._cpu_log += time.process_time() - c0
            wall = time.perf_counter() - t_start
            return self._finish(wall)
        finally:
            if hasattr(self, "dist"):
                self.dist.close()

    def _log_train(self, acc: torch.Tensor, steps: int, t_prev: float) -> float:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        now = time.perf_counter()
        v = acc.tolist()
        loss = v[0] / max(v[1], 1.0)
        if not np.isfinite(loss):
            raise McLSError(f"non-finite training loss at step {self.step} (lr {self.scheduler.last_lr:.3g}); "
                            "lower optim.lr or set optim.clip_norm")
        dt = max(now - t_prev, 1e-9)
        rec = {"event": "train", "step": self.step, "epoch": self.epoch, "loss": loss,
               "lr": self.scheduler.last_lr, "grad_norm": v[7] / steps,
               "tokens_per_s": v[2] / dt, "samples_per_s": v[6] / dt,
               "pad_waste": padding_waste(int(v[2]), int(v[3])),
               "video_pad_waste": padding_waste(int(v[4]), int(v[5])) if v[5] else None,
               "tokens": int(v[2]), "steps": steps, "seconds": round(dt, 4),
               "data_seconds": round(self._data_seconds, 4),
               "cpu_seconds": round(time.process_time() - self._cpu_log, 4)}
        self._data_seconds = 0.0
        self._cpu_log = time.process_time()
        self._log(rec)
        if self.dist.main and (self.step % max(100, self.spec["log_every"]) == 0 or self.step == self.total_steps):
            log.info("step %d/%d epoch %d loss %.4f lr %.3g %.0f tok/s pad %.1f%%", self.step, self.total_steps,
                     self.epoch, loss, rec["lr"], rec["tokens_per_s"], 100 * rec["pad_waste"])
        return now

    def _finish(self, wall: float) -> dict[str, Any]:
        s = self.spec
        selected = s["select"] if self.best["valid_loss"] is not None else "last"
        summary = None
        if self.dist.main:
            src = self.ckpt_dir / ("best.pt" if selected == "best" else "last.pt")
            chosen = ckpt_io.load(src)
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            summary = {
                "model": s["model"], "stage": s["stage"], "task": s["task"],
                "model_meta": self.model_meta,
                "parameters": sum(p.numel() for p in self.model.parameters()),
                "trainable_parameters": sum(p.numel() for p in self.params),
                "train_rows": len(self.train_data), "skipped_videos": len(self.train_data.skipped),
                "skipped_first": self.train_data.skipped[:20],
                "steps": self.step, "total_steps": self.total_steps, "epochs_done": self.epoch,
                "best": self.best, "final_valid_loss": self.valid_loss,
                "selected": selected, "selected_step": chosen["step"],
                "world_size": self.dist.world, "device": str(self.device),
                "wall_seconds_last_session": round(wall, 2), "peak_rss_mb": round(peak, 1),
                "peak_cuda_mb": (round(torch.cuda.max_memory_allocated(self.device) / 2**20, 1)
                                 if self.device.type == "cuda" else None),
                "code_version": self.code_version, "spec": s,
            }
            write_json(self.out / "model.json", summary)
            ckpt_io.save(self.out / "final.pt", ckpt_io.model_only(chosen, selected))
            log.info("done: %d steps, selected %s (step %d), final.pt written", self.step, selected, chosen["step"])
        self.dist.barrier()
        return summary or {}


def train(spec: dict, out_dir: str | Path, **kwargs) -> dict[str, Any]:
    return Trainer(spec, out_dir, **kwargs).run()
