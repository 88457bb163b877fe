"""Long command-line jobs: units of work shared out over the workers of `TF_CONFIG`, recorded
as they complete (so a stopped job resumes), and merged by the chief.

A job is a list of units (explain's and evaluate's batches, search's segments), numbered in the
inputs' order. Worker r of n takes the units u with u % n == r. A unit's outputs are written
first, then one line in the worker's record file (`<out>/.keras-interp/records-<r>.jsonl`,
flushed and synced): a unit without its line is redone, whatever it had written, so a job
killed at any point loses nothing and duplicates nothing. The chief merges the records in unit
order, which makes the merged outputs the ones a single process writes.

The job's manifest (`<out>/.keras-interp/job.json`) holds a key of everything that decides the
outputs (command, model file's hash, input names, options) and the launches whose records count:
a fresh start (by the chief) replaces them, `--resume` adds one. Workers of another job refuse
the folder. No TensorFlow here: the cluster is read from TF_CONFIG's JSON, as TensorFlow's
TFConfigClusterResolver reads it, and workers meet through the output folder, which every
worker must see at the same path (a shared file system), as multi-worker checkpoints do.
"""

import dataclasses
import glob
import hashlib
import fcntl
import json
import math
import os
import shutil
import sys
import time
import uuid

__all__ = ["Cluster", "Job", "JobError", "STATE", "atomic_write", "file_digest"]

STATE = ".keras-interp"


class JobError(ValueError):
    """A job that cannot start or finish: the command prints the message (exit code 2)."""


@dataclasses.dataclass(frozen=True)
class Cluster:
    """This process's place among the job's workers: rank in [0, count); rank 0 is the chief."""

    rank: int = 0
    count: int = 1

    @property
    def chief(self):
        return self.rank == 0

    @classmethod
    def from_tf_config(cls, text=None):
        """The cluster TF_CONFIG describes: the "chief" task (if any) then the "worker" tasks,
        in their order, share the work; this process is the task TF_CONFIG's "task" names."""
        text = os.environ.get("TF_CONFIG") if text is None else text
        if not text:
            raise JobError("--strategy multiworker reads the cluster from the TF_CONFIG environment variable, which is "
                           'not set (e.g. TF_CONFIG=\'{"cluster": {"worker": ["host1:2222", "host2:2222"]}, '
                           '"task": {"type": "worker", "index": 0}}\')')
        try:
            config = json.loads(text)
            cluster, task = config["cluster"], config["task"]
            kind, index = task["type"], int(task["index"])
            if not isinstance(cluster, dict) or not all(isinstance(v, (list, dict)) for v in cluster.values()):
                raise TypeError
        except (ValueError, KeyError, TypeError, AttributeError):
            raise JobError(f"TF_CONFIG must be JSON with a 'cluster' mapping each task type to a list of addresses and "
                           f"a 'task' with 'type' and 'index'; received {text[:200]!r}") from None
        tasks = [("chief", i) for i in range(len(cluster.get("chief", ())))]
        tasks += [("worker", i) for i in range(len(cluster.get("worker", ())))]
        if (kind, index) not in tasks:
            raise JobError(f"TF_CONFIG's task {kind} {index} is not one of the cluster's chief and worker tasks "
                           f"({', '.join(f'{k} {i}' for k, i in tasks) or 'none'}); evaluator and ps tasks take no share")
        if sum(k == "chief" for k, _ in tasks) > 1:
            raise JobError(f"TF_CONFIG names {len(cluster['chief'])} chief tasks; a cluster has at most one")
        return cls(rank=tasks.index((kind, index)), count=len(tasks))


def file_digest(path, chunk=1 << 20):
    """SHA-1 of a file's bytes (the model's: workers must load the same one)."""
    digest = hashlib.sha1()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def atomic_write(path, write, sync=True, temporary=None):
    """Write a file through `write(handle)` to a temporary name, then rename it into place: the
    file is whole or absent, never half written, whenever the process stops. `sync` also forces
    it to disk (the job's files; maps are many, and a unit's record comes after them anyway).
    `temporary`: where to write first (default: beside `path`), on the same file system."""
    temporary = temporary or f"{path}.{uuid.uuid4().hex[:8]}.part"
    try:
        with open(temporary, "wb") as handle:
            write(handle)
            handle.flush()
            if sync:
                os.fsync(handle.fileno())
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


class Job:
    """One command's units over one output folder (see the module's docstring).

    Args:
        out: the output folder, shared by the workers.
        key: JSON-able description of everything that decides the outputs.
        units: number of units.
        cluster: this process's Cluster.
        resume: keep the records of earlier launches of the same job (else the chief starts
            afresh, and needs the folder empty or `overwrite`).
        overwrite: the chief may start in a non-empty folder (its files are replaced as written).
        wait: seconds a worker waits for the chief's manifest, and the chief for the workers'
            records when none arrives.
    """

    def __init__(self, out, key, units, cluster=Cluster(), resume=False, overwrite=False, wait=600.0):
        self.out, self.units, self.cluster = out, int(units), cluster
        self.key = json.loads(json.dumps(key, sort_keys=True))  # as the manifest will read back
        if not (isinstance(wait, (int, float)) and math.isfinite(wait) and wait >= 0):
            raise JobError(f"--wait must be a number of seconds >= 0; received {wait!r}")
        self.resume, self.overwrite, self.wait = resume, overwrite, float(wait)
        self.state = os.path.join(out, STATE)
        self.manifest = os.path.join(self.state, "job.json")
        self.records_path = os.path.join(self.state, f"records-{cluster.rank}.jsonl")
        self.launch, self._held = None, None

    # ----------------------------------------------------------------------------- start
    def start(self, clean=None):
        """Prepare (chief) or join (other workers) the job; returns self. `clean()`: removes an
        earlier job's outputs that would not simply be overwritten; the chief calls it on a fresh
        start, before the manifest lets the other workers in."""
        if self.cluster.chief:
            self._start_chief(clean)
        else:
            self._join()
        self._lock()
        self._repair()
        return self

    def _lock(self):
        """Hold a lock on this worker's record file while the job runs: a second process given the
        same task (a TF_CONFIG mistake) is refused instead of doing the share twice and removing
        the first one's temporaries."""
        self.close()
        self._held = open(self.records_path, "a", encoding="utf-8")
        try:
            fcntl.flock(self._held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self._held.close()
            self._held = None
            raise JobError(f"another process is already worker {self.cluster.rank} of the job in {self.out}; give "
                           "each worker its own task index in TF_CONFIG") from None

    def _start_chief(self, clean):
        if os.path.exists(self.out) and not os.path.isdir(self.out):
            raise JobError(f"--out {self.out} is a file, not a folder")
        found = self._read_manifest()
        if self.resume:
            if found is None:
                raise JobError(f"--resume: {self.out} holds no job to resume (no {STATE}/job.json); run without "
                               "--resume to start one")
            if found["key"] != self.key:
                raise JobError(f"--resume: {self.out} holds another job ({_difference(found['key'], self.key)}); "
                               "resume with the same command, or choose another --out")
            launches = found["launches"]
        else:
            if os.path.isdir(self.out) and os.listdir(self.out) and not self.overwrite:
                raise JobError(f"output folder {self.out} exists and is not empty; choose another --out, pass "
                               "--overwrite, or --resume to continue the job it holds")
            if os.path.isdir(self.state):
                shutil.rmtree(self.state)  # the earlier job's records: they do not count for this one
            if clean is not None and os.path.isdir(self.out):
                clean()
            launches = []
        try:
            os.makedirs(self.state, exist_ok=True)
        except OSError as exc:
            raise JobError(f"cannot create the output folder {self.out}: {exc.strerror}") from None
        self.launch = uuid.uuid4().hex
        self._write_manifest({"key": self.key, "units": self.units, "workers": self.cluster.count,
                              "launches": launches + [self.launch], "merged": []})

    def _write_manifest(self, body):
        atomic_write(self.manifest, lambda h: h.write(json.dumps(body, indent=1, sort_keys=True).encode()),
                     temporary=self.temporary())

    def merged(self):
        """The chief: say that this launch's outputs are merged, so a worker started later without
        --resume waits for the next launch instead of joining this finished one."""
        found = self._read_manifest()
        if found is not None and found["key"] == self.key and self.launch in found["launches"]:
            self._write_manifest(dict(found, merged=sorted(set(found.get("merged", [])) | {self.launch})))

    def _join(self):
        """A worker takes the chief's latest launch of this job, waiting for the chief to write it."""
        deadline = time.monotonic() + self.wait
        while True:
            found = self._read_manifest()
            if found is not None and found["key"] == self.key and (self.resume or found["launches"][-1] not in
                                                                  found.get("merged", ())):
                if found["workers"] != self.cluster.count:
                    raise JobError(f"worker {self.cluster.rank}: TF_CONFIG names {self.cluster.count} workers but the "
                                   f"chief's names {found['workers']}; give every worker the same cluster")
                self.launch = found["launches"][-1]
                os.makedirs(self.state, exist_ok=True)
                return
            if time.monotonic() > deadline:
                said = ("holds no job" if found is None
                        else f"holds another job ({_difference(found['key'], self.key)})" if found["key"] != self.key
                        else "holds only a finished run of this job (pass --resume to join it, or start the chief)")
                raise JobError(f"worker {self.cluster.rank}: after {self.wait:.0f} s {self.out} still {said}; is the "
                               "chief (worker 0) running the same command with the same --out?")
            time.sleep(0.2)

    def _read_manifest(self):
        try:
            with open(self.manifest, encoding="utf-8") as handle:
                return json.load(handle)
        except (OSError, ValueError):
            return None

    def temporary(self):
        """A file name to write an output under before it is renamed into place: in the job's
        folder, so a kill leaves no stray file among the outputs (the next start removes it)."""
        return os.path.join(self.state, f"tmp-{self.cluster.rank}-{uuid.uuid4().hex[:12]}.part")

    def _repair(self):
        """Remove this worker's temporaries and cut its record file after its last whole line: a
        line cut by a kill is dropped (its unit is redone), and the next line does not run into it."""
        for path in glob.glob(os.path.join(self.state, f"tmp-{self.cluster.rank}-*")):
            os.remove(path)
        if not os.path.exists(self.records_path):
            return
        with open(self.records_path, "rb+") as handle:
            data = handle.read()
            end = data.rfind(b"\n") + 1
            if end != len(data):
                handle.truncate(end)

    # ----------------------------------------------------------------------------- work
    def records(self):
        """{unit: payload} of every unit recorded in a launch that counts (all workers' files)."""
        found = self._read_manifest()
        if found is None or found["key"] != self.key:
            return {}
        launches, done = set(found["launches"]), {}
        for path in sorted(glob.glob(os.path.join(self.state, "records-*.jsonl"))):
            with open(path, encoding="utf-8") as handle:
                for line in handle:
                    try:
                        record = json.loads(line)
                    except ValueError:
                        continue  # a line cut short by a kill
                    if record.get("launch") in launches and 0 <= record.get("unit", -1) < self.units:
                        done.setdefault(record["unit"], record["payload"])
        return done

    def todo(self):
        """This worker's units not recorded yet, in order."""
        done = self.records()
        return [u for u in range(self.cluster.rank, self.units, self.cluster.count) if u not in done]

    def record(self, unit, payload):
        """Say that `unit`'s outputs are complete (call after writing them)."""
        self._held.write(json.dumps({"launch": self.launch, "unit": int(unit), "payload": payload}) + "\n")
        self._held.flush()
        os.fsync(self._held.fileno())

    def close(self):
        """Release this worker's record file (and its lock)."""
        if getattr(self, "_held", None) is not None:
            self._held.close()
            self._held = None

    def still_current(self):
        """Whether this worker's launch still counts (the chief may have restarted the job after
        this worker read the manifest: then its records do not count and it works again)."""
        found = self._read_manifest()
        return found is not None and found["key"] == self.key and self.launch in found["launches"]

    def rejoin(self):
        self.close()
        self._join()
        self._lock()

    def gather(self, quiet=False):
        """The chief: every unit's payload in unit order, waiting for the other workers' records
        (a timeout after `wait` seconds with no new record); other workers: None."""
        if not self.cluster.chief:
            return None
        done, last_count, last_change, said = self.records(), -1, time.monotonic(), False
        while len(done) < self.units:
            if len(done) != last_count:
                last_count, last_change = len(done), time.monotonic()
            elif time.monotonic() - last_change > self.wait:
                missing = sorted(set(range(self.units)) - set(done))
                owners = sorted({u % self.cluster.count for u in missing})
                raise JobError(f"waited {self.wait:.0f} s without news from workers {', '.join(map(str, owners))}: "
                               f"{len(missing)} of {self.units} units are not done. What is done is kept: run the "
                               "missing workers again with --resume, then the chief with --resume to merge")
            if not quiet and not said:
                print(f"keras-interp: waiting for the other workers ({len(done)} of {self.units} units done)",
                      file=sys.stderr)
                said = True
            sizes = self._sizes()
            while self._sizes() == sizes and time.monotonic() - last_change <= self.wait:
                time.sleep(0.2)  # read the records again only once a worker has added one
            done = self.records()
        return [done[u] for u in range(self.units)]

    def _sizes(self):
        return sorted((path, os.path.getsize(path)) for path in glob.glob(os.path.join(self.state, "records-*.jsonl")))


def _difference(old, new):
    """What differs between two job keys, for the message."""
    changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    return "it differs in " + ", ".join(changed) if changed else "it differs"
