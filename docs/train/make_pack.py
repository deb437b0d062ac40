"""What the GPU machine needs to train, small enough to travel with the working tree (64 MiB):
the *train and val* identities' images of the identity split (never the test ones), re-encoded as
grayscale JPEG q95 (the network reads gray; 43 MB instead of 66), their rows of the CSVs and of
identity_split.csv, the Haar boxes of each part made here with OpenCV 4 (the machine's OpenCV 5
has no cascade; `facetracks train` reads them from the run folder), and tqdm, which the machine
lacks. Run from the repo: `python docs/train/make_pack.py ../shared/data/ytf68 .dev-train`
(git-ignore the destination); then `bash docs/train/gpu_train.sh` there (the device's carry:
[".dev-train"])."""
import json
import os
import shutil
import sys

import cv2
import pandas as pd
import tqdm

from facetracks.jobs.train_cmd import _boxes
from facetracks.pipeline.detect import HaarDetector
from facetracks.training.data import FOLDERS, load_split, read_image_gray


def main(src: str, dest: str) -> None:
    data = os.path.join(dest, "ytf68")
    ids = pd.read_csv(os.path.join(src, "identity_split.csv"))
    keep = ids[ids.split.isin(["train", "val"])]
    for f in FOLDERS:
        os.makedirs(os.path.join(data, f), exist_ok=True)
        csv = pd.read_csv(os.path.join(src, f"{f}_frames_keypoints.csv"))
        names = set(keep[keep.folder == f].image)
        csv[csv.iloc[:, 0].isin(names)].to_csv(os.path.join(data, f"{f}_frames_keypoints.csv"), index=False)
        for n in sorted(names):
            gray = read_image_gray(os.path.join(src, f, n))
            cv2.imwrite(os.path.join(data, f, n), gray, [cv2.IMWRITE_JPEG_QUALITY, 95])
    keep.to_csv(os.path.join(data, "identity_split.csv"), index=False)
    boxes = os.path.join(dest, "boxes")
    os.makedirs(boxes, exist_ok=True)
    parts = {p: load_split(src, "identity", p) for p in ("train", "val")}
    for name, samples in (("train_identity_all", parts["train"]), ("val_identity_all", parts["val"]),
                          ("train+val_identity_all", parts["train"] + parts["val"])):
        _boxes(boxes, name, samples, HaarDetector)
    site = os.path.join(dest, "site")
    shutil.rmtree(site, ignore_errors=True)
    shutil.copytree(os.path.dirname(tqdm.__file__), os.path.join(site, "tqdm"))
    size = sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(dest) for f in fs)
    print(json.dumps({"images": len(keep), "bytes": size}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
