"""Train the default models that ship in medsr/weights, reproducibly, on offline data.

Data: the training volumes of pipelines/real_data.py's manifest (runs/data/real/train,
built first when missing; docs/data.md): scans of real people (pycortex's T1, heudiconv's
diffusion b0 x2 and b1500), Colin27, the INIA19 macaque template and the anterior block
(y < 110 voxels) of the MNI152 T1 template (its posterior block, y >= 123, is held out
for pipelines/benchmark_quality.py; the held-out real subjects are benchmarked by
pipelines/benchmark_real.py).

Each model is a `medsr train` run of a config in configs/default/ (blind degradation:
randomised slice profile, width, image- vs k-space sampling; noise-faithful targets:
the noise-free sources get Rician noise on the HR patch before degrading, real scans keep
their own, `degradation.target_noise`; a little extra LR noise). Runs are
deterministic on CPU for a given thread count (each config's num_threads), so rerunning this script
regenerates the weights bit for bit on the same software stack. The best checkpoint (by
validation PSNR) is copied to medsr/weights/ with its JSON and a model card.

    python pipelines/train_default.py [--jobs 2] [--only thick_slice_x4,in_plane_x2]
        [--init runs/previous]    # fine-tune from earlier defaults (what ships now, see
                                  # each model card for the commit they come from)
        [--weights DIR]           # write there instead of medsr/weights
        [--set train.steps=300]   # a quick, weaker rerun
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs" / "default"
WEIGHTS = ROOT / "medsr" / "weights"
# the commit whose medsr/weights each shipped default was fine-tuned from, and its lineage:
# b976409 (MNI152 template only) -> fca3aa5 (1000 steps on real scans, area / k-space
# sampling) -> 2e34849 -> b9716ad (1000 steps more, with decimate) -> 76e9127 (4000 steps
# more, same data and degradations) -> 79126dc (4000 steps more, acquire in place of
# decimate: the profile centred on each LR sample, docs/degradation.md) -> the in-plane
# defaults of this commit (4000 steps more with pyradiomics' thick-slice scans, their
# axial planes: two chest CTs, two post-contrast T1 brains, docs/data.md; in-plane x2 with
# blurs up to 1.2 x the spacing); the thick-slice defaults: fine-tuned from 76e9127's
LINEAGE_76 = ("itself fine-tuned 4000 steps from commit b9716ad's, which were fine-tuned "
              "1000 steps with decimate among the downsamplers from commit 2e34849's, which "
              "were fine-tuned 1000 steps on these real scans (commit fca3aa5) from the "
              "MNI152-template-only weights of commit b976409")
LINEAGE_79 = ("themselves fine-tuned 4000 steps with acquire in place of decimate from "
              f"commit 76e9127's, {LINEAGE_76.replace('itself ', '')}")
PREVIOUS = {"in_plane_x2": ("79126dc", LINEAGE_79), "in_plane_x4": ("79126dc", LINEAGE_79)}
PREVIOUS_OTHERS = ("76e9127", LINEAGE_76)  # the thick-slice defaults


def previous(name: str) -> tuple[str, str]:
    """(commit, lineage) of the weights default ``name`` is fine-tuned from."""
    return PREVIOUS.get(name, PREVIOUS_OTHERS)


MODELS = ["thick_slice_x4", "in_plane_x2", "thick_slice_x2", "in_plane_x4", "thick_slice_x6",
          "thick_slice_x3", "thick_slice_x5"]


def make_training_data(out_dir: Path | None = None) -> Path:
    """The folder of the real-data manifest's training volumes (the only data the models
    see), built by pipelines/real_data.py when missing; ``out_dir`` is ignored (kept for
    callers of the template-only version)."""
    sys.path.insert(0, str(ROOT / "pipelines"))
    import real_data

    files = real_data.training_files()
    folders = {f.parent for f in files}
    if len(folders) != 1 or not all(f.exists() for f in files):
        raise SystemExit(f"the training volumes {files} are not one folder of files")
    extra = set(folders.pop().glob("*.nii*")) - set(files)
    if extra:
        raise SystemExit(f"{files[0].parent} holds files the manifest does not list: {extra}")
    return files[0].parent


def same_architecture(name: str, init: Path) -> bool:
    """Whether ``init``'s previous default ``name`` is the network the config trains now:
    a model whose config changed architecture (a candidate such as
    configs/in_plane_x2_edsr.yaml put in its place) trains from scratch."""
    import yaml

    cfg = yaml.safe_load((CONFIGS / f"{name}.yaml").read_text())
    sidecar = init / f"{name}.json"
    if not sidecar.exists():
        raise SystemExit(f"{sidecar} is missing: --init needs each model's .json beside it")
    return json.loads(sidecar.read_text())["architecture"] == cfg["model"]["name"]


def train_one(name: str, data_dir: Path, runs: Path, sets: list[str],
              init: Path | None = None) -> tuple[str, float, Path]:
    run_dir = runs / name
    if run_dir.exists():
        shutil.rmtree(run_dir)
    cmd = [sys.executable, "-m", "medsr", "train", str(CONFIGS / f"{name}.yaml"),
           "--run-dir", str(run_dir), "--set", f"data.path={data_dir}", "--no-progress"]
    if init is not None and same_architecture(name, init):  # fine-tune: start from a
        cmd += ["--set", f"model.init={init / (name + '.safetensors')}"]  # previous default
    for s in sets:
        cmd += ["--set", s]
    t0 = time.perf_counter()
    with (runs / f"{name}.log").open("w") as log:
        subprocess.run(cmd, check=True, stdout=log, stderr=subprocess.STDOUT)
    return name, time.perf_counter() - t0, run_dir


def collect_run(name: str, data_dir: Path, runs: Path, sets: list[str],
                init: Path | None = None) -> tuple[str, float, Path]:
    """A finished run; its training time from the run's own files (manifest -> the last
    checkpoint written, the end of training)."""
    run_dir = runs / name
    best = run_dir / "checkpoints" / "best.safetensors"
    if not best.exists():
        raise SystemExit(f"{run_dir} has no best checkpoint; train it first")
    end = max(p.stat().st_mtime for p in (run_dir / "checkpoints").glob("*.safetensors"))
    secs = end - (run_dir / "manifest.json").stat().st_mtime
    return name, secs, run_dir


def model_card(name: str, info: dict, seconds: float, run_dir: Path) -> str:
    rows = [r for r in (run_dir / "metrics.csv").read_text().splitlines()[1:] if r]
    last_val = [r.split(",") for r in rows if r.split(",")[-1]]
    val = f"{float(last_val[-1][-2]):.2f} dB PSNR / {float(last_val[-1][-1]):.4f} SSIM" \
        if last_val else "n/a"
    cfg = json.loads((run_dir / "manifest.json").read_text())["config"]
    smp = cfg["sampling"]
    augment = "".join(
        [f" gamma x ** g, log g uniform in {smp['gamma']};" if smp.get("gamma") else "",
         f" a random smooth look-up table (contrasts may reorder) for {smp['remap']:.0%} of "
         "patches" if smp.get("remap") else ""]).rstrip(";") or " none"
    commit, lineage = previous(name)
    init = ("fine-tuned from the previous default of the same name (medsr/weights at "
            f"commit {commit}, {lineage}), "
            if cfg["model"].get("init") else "")
    tn = cfg["degradation"].get("target_noise") or {"kind": "none"}
    target_noise = ("none (targets as the sources are)" if tn["kind"] == "none" else
                    f"{tn['kind']} noise of sigma {tn['sigma']} (normalised units) added to "
                    f"the HR patch before degrading, for sources matching {tn['match']} "
                    "(templates, averages and pycortex's flattened white matter); the real "
                    "scans keep their own noise, so the networks do not learn to denoise")
    regen = (f"`mkdir -p runs/previous && git show {commit}:medsr/weights/{name}"
             f".safetensors > runs/previous/{name}.safetensors` (and its `.json`), then "
             f"`python pipelines/train_default.py --only {name} --init runs/previous`"
             if init else f"`python pipelines/train_default.py --only {name}`")
    n_threads = int(cfg.get("num_threads", 1))
    threads = f"{n_threads} CPU thread{'s' if n_threads > 1 else ''}"
    # pyradiomics' 5-6.5 mm scans: only a sampling with the axial planes (normal 2) uses them
    axial = 2 in cfg["sampling"]["axes"] and cfg["sampling"].get("max_anisotropy")
    thick = ("; the axial planes of four clinical thick-slice scans of four more adults "
             "(pyradiomics: two chest CTs, 0.57-0.63 mm in-plane, and two post-contrast T1 "
             "brains, 0.78 mm in-plane)" if axial else "")
    aniso = (f", only planes within {cfg['sampling']['max_anisotropy']} x a volume's finest "
             "spacing" if cfg["sampling"].get("max_anisotropy") else "")
    limits_thick = ", four clinical thick-slice scans" if axial else ""
    limits_ct = ("brain MRI and chest CT (the held-out head CT measures the transfer to "
                 "another body part)" if axial else
                 "brain MRI only (T1, diffusion; the intensity augmentation stands in for "
                 "other contrasts); no CT in training (the held-out CT measures the "
                 "transfer)")
    use = ("one coarse axis: applied on both planes that contain it, fused"
           if info["scale"][0] == 1 else "in-plane, slice by slice")
    return f"""# medsr default model `{name.replace('_', '-')}`

- **Network**: `{info['architecture']}` {json.dumps(info['hparams'])}, 2D, scale
  {info['scale']} per patch axis ({use}).
- **Data** (`pipelines/real_data.py`, table in docs/data.md): scans of real people:
  pycortex's adult T1 (1 mm), heudiconv's diffusion b0 x2 and b1500 of one adult
  (1.5 mm); Colin27 (one adult, average of 27 scans, 1 mm); the INIA19 macaque template
  (0.5 mm); the MNI152 T1 template's anterior block (y < 110 voxels, 1 mm){thick};
  slices from orientations {cfg['sampling']['axes']}{aniso}; robust percentile normalisation
  {cfg['data']['normalise']}. Held out (never trained on): a head CT, the ITK T1 and
  dipy's b0 (`pipelines/benchmark_real.py`), and the MNI152 posterior block
  (`pipelines/benchmark_quality.py`).
- **Noise-faithful targets**: {target_noise}.
- **Intensity augmentation of the HR patch** (before the degradation):{augment}.
- **Degradation (blind, randomised per patch)**: preset `{cfg['degradation']['preset']}`
  with {json.dumps(cfg['degradation']['params'])}.
- **Training**: {init}{cfg['train']['steps']} steps, batch {cfg['sampling']['batch_size']},
  patches {cfg['sampling']['patch_size']}, {cfg['optim']['name']} lr {cfg['optim']['lr']}
  ({cfg['schedule']['name']}), L1 loss, seed {cfg['seed']}, {threads}:
  {seconds / 60:.1f} minutes on this project's shared 2-core machine (other jobs running).
- **Validation** (held-back patches of the training block, last evaluation): {val}.
- **Regenerate**: {regen}.
- **Known limits**: few subjects (three real adults, two averages, one macaque
  template{limits_thick}), {limits_ct}; trained
  on magnitude images normalised to [0, 1] by percentiles; the output keeps the input's
  noise (it does not denoise). Use
  `medsr infer --self-supervised` for scans unlike the training data.
"""


def ship_weights(src: Path, dst: Path) -> dict:
    """Copy the run's best checkpoint to ``dst`` with its receptive field stored in the
    metadata (what ``medsr infer`` reads instead of probing the network on every run,
    issue 24); the tensors are unchanged. Returns the info written."""
    from medsr.inference.receptive_field import FIELD_KEY, receptive_field_info
    from medsr.models.checkpoint import load_model, read_checkpoint, save_model

    state, info = read_checkpoint(src)
    net, _ = load_model(src, device="cpu")
    info = {k: v for k, v in info.items() if k not in ("format", "medsr_version")}
    info[FIELD_KEY] = receptive_field_info(net)
    save_model(dst, state, info)
    return json.loads(dst.with_suffix(".json").read_text())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--only", help="comma-separated model names")
    ap.add_argument("--runs", type=Path, default=ROOT / "runs" / "default")
    ap.add_argument("--set", dest="sets", action="append", default=[])
    ap.add_argument("--weights", type=Path, default=WEIGHTS,
                    help="where the weights, JSON and cards go (default medsr/weights)")
    ap.add_argument("--init", type=Path,
                    help="fine-tune: a folder of previous default weights (same file names) "
                    "to start each model from")
    ap.add_argument("--collect-only", action="store_true",
                    help="do not train: copy finished runs from --runs into medsr/weights")
    args = ap.parse_args(argv)
    names = args.only.split(",") if args.only else MODELS
    args.runs.mkdir(parents=True, exist_ok=True)
    data_dir = make_training_data(args.runs / "data")
    out = args.weights
    out.mkdir(parents=True, exist_ok=True)
    with ThreadPoolExecutor(args.jobs) as pool:
        futures = [pool.submit(collect_run if args.collect_only else train_one, n, data_dir,
                               args.runs, args.sets, args.init) for n in names]
        for fut in futures:
            name, secs, run_dir = fut.result()
            info = ship_weights(run_dir / "checkpoints" / "best.safetensors",
                                out / f"{name}.safetensors")
            info["name"] = name.replace("_", "-")
            info["training_seconds"] = round(secs, 1)
            (out / f"{name}.json").write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
            (out / f"{name}.md").write_text(model_card(name, info, secs, run_dir))
            print(f"{name}: {secs / 60:.1f} min -> {out / (name + '.safetensors')}",
                  flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
