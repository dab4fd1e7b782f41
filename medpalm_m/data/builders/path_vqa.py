"""Path-VQA (He et al. 2020): pathology images with generated questions, from either distribution.

Original distribution (github.com/UCSD-AI4H/PathVQA, Google Drive `pvqa.zip`), the manual
directory being its `pvqa/` folder:

    qas/{train,val,test}/{train,val,test}_qa.pkl   pickled list of {"image": "train_0422",
                                                    "question": str, "answer": str}
    images/{train,val,test}/<image>.jpg

19,755 / 6,279 / 6,761 questions. The pickles are read with `safe_pickle.load_plain`, which
refuses any pickled code, so a tampered file cannot run anything.

Parquet copy (Hugging Face `flaviagiammarino/path-vqa`, a clone of the dataset repository):
`data/{train,validation,test}-*.parquet` with columns `image` (struct of `bytes`, `path`),
`question`, `answer`. It is deduplicated (test 6,719), so its numbers are not the paper's.
When both are present the original pickles are read.
"""

from __future__ import annotations

import glob
import os
from typing import Any, Iterator

import numpy as np

from medpalm_m.data import images
from medpalm_m.data.builders import base, safe_pickle, vqa

# TFDS split -> (folder/prefix of the original distribution, split name of the parquet copy)
SPLITS = {"train": ("train", "train"), "validation": ("val", "validation"), "test": ("test", "test")}


def _pickle_path(folder: str) -> str:
  return os.path.join("qas", folder, f"{folder}_qa.pkl")


def _parquet_pattern(name: str) -> str:
  return os.path.join("data", f"{name}-*.parquet")


class PathVqa(vqa.VqaBuilder):
  DESCRIPTION = "Path-VQA: questions and answers about pathology images from textbooks and libraries."
  HOMEPAGE = "https://github.com/UCSD-AI4H/PathVQA"
  OBTAIN = ("Download pvqa.zip from the Google Drive link in the PathVQA README, unzip it and use the "
            "pvqa/ folder as the manual directory; or clone the Hugging Face dataset "
            "flaviagiammarino/path-vqa (parquet) and use its folder.")
  REQUIRED_FILES = tuple((_pickle_path(folder), _parquet_pattern(name)) for folder, name in SPLITS.values())
  CITATION = "He et al., PathVQA: 30000+ Questions for Medical Visual Question Answering, arXiv 2003.10286."

  def generate_splits(self, manual_dir: str):
    original = all(os.path.exists(os.path.join(manual_dir, _pickle_path(f))) for f, _ in SPLITS.values())
    if original:
      missing = [os.path.join("images", folder) for folder, _ in SPLITS.values()
                 if not os.path.isdir(os.path.join(manual_dir, "images", folder))]
      if missing:
        raise base.ManualDataError(f"{self.name}: the question pickles are in {manual_dir} but the image "
                                   f"folders {missing} are not; unzip all of pvqa.zip there.\n"
                                   f"{self.instructions()}")
      return {split: self._pickle_records(manual_dir, folder) for split, (folder, _) in SPLITS.items()}
    return {split: self._parquet_records(manual_dir, name) for split, (_, name) in SPLITS.items()}

  def _pickle_records(self, manual_dir: str, folder: str) -> Iterator[base.KeyedRecord]:
    path = os.path.join(manual_dir, _pickle_path(folder))
    entries = safe_pickle.load_plain(path)  # refuses the whole file if it holds any code
    if not isinstance(entries, list):
      raise base.MalformedRecordError(path, None, f"expected a list of questions, found a {type(entries).__name__}")
    questions = []
    for index, entry in enumerate(entries):
      with self.record_at(path, None, entry=f"item {index}"):
        questions.append((None, index, self._record(f"{folder}-{index}", str(entry["image"]), entry)))
    yield from self.with_images(path, questions,
                                lambda name: os.path.join(manual_dir, "images", folder, f"{name}.jpg"))

  def _parquet_records(self, manual_dir: str, name: str) -> Iterator[base.KeyedRecord]:
    import pyarrow.parquet as pq
    for path in sorted(glob.glob(os.path.join(manual_dir, _parquet_pattern(name)))):
      shard = os.path.basename(path)
      rows = (entry for batch in pq.ParquetFile(path).iter_batches(batch_size=64, columns=["image", "question", "answer"])
              for entry in batch.to_pylist())  # a shard holds hundreds of MB of images: stream it
      for row, entry in enumerate(rows):
        with self.record_at(path, None, entry=f"row {row}"):
          image = entry["image"]
          image_name = str(image.get("path") or f"{shard}-{row}")
          pixels = images.decode_image(image["bytes"], f"{path} row {row}", max_side=self.IMAGE_MAX_SIDE)
          if pixels.ndim == 2:  # stored RGB, as load_image gives for files on disk
            pixels = np.repeat(pixels[..., None], 3, axis=-1)
          yield f"{shard}-{row}", {**self._record(f"{name}-{shard}-{row}", image_name, entry), "image": pixels}

  @staticmethod
  def _record(key: str, image_name: str, entry: dict[str, Any]) -> dict[str, Any]:
    answer = str(entry["answer"]).strip()
    return {"id": f"path_vqa-{key}", "image_name": image_name,
            "question": str(entry["question"]).strip(), "answer": answer,
            # Path-VQA has no answer-type field; yes/no questions are its closed ones.
            "answer_type": "CLOSED" if answer.lower() in ("yes", "no") else "OPEN"}


PATH_VQA = vqa.register("path_vqa", PathVqa, "Path-VQA")
