"""Mixtures, grain iteration (determinism, resume, process shards), preprocessing, bad input."""

import collections
import dataclasses

import numpy as np
import pydicom
import pytest
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from medpalm_m.data import augment, images, mixtures, pipeline, preprocess, tasks
from medpalm_m.data import tokenizer as tok
from medpalm_m.data.synthetic import base, tokenizer_path

MIX = {"synthetic_pubmedqa": 0.6, "synthetic_mimic_iii": 0.3, "synthetic_medqa": 0.1}
PACKING = pipeline.Packing(images_per_row=2, examples_per_row=6)


def make_preprocessor(data_dir, names, max_prompt=160, max_target=32):
  tokenizer = tok.Tokenizer(tokenizer_path(data_dir))
  spec = preprocess.SequenceSpec(max_prompt_tokens=max_prompt, max_target_tokens=max_target,
                                 max_images=1, image_size=32, image_slots=16)
  return preprocess.Preprocessor(tokenizer, spec, pipeline.task_ids(names))


def test_mixture_draws_match_the_weights(synthetic_data_dir):
  counts = collections.Counter(ex["task"] for ex in pipeline.first_examples(MIX, synthetic_data_dir, 10_000))
  for task, weight in MIX.items():
    # Binomial standard deviation at 10k draws is at most 0.5%; allow 3 sigma.
    assert abs(counts[task] / 10_000 - weight) < 0.015, counts


def assert_resumes_exactly(make, skip: int) -> None:
  """An iterator from `make()` is read `skip` batches, its state taken and the iterator dropped (a
  kill); a new one restored from that state alone, as the trainer does from a checkpoint, gives
  the same next 3 batches."""
  it = make()
  for _ in range(skip):
    next(it)
  state = it.get_state()
  expected = [next(it) for _ in range(3)]
  del it
  resumed = make()
  resumed.set_state(state)
  for want in expected:
    got = next(resumed)
    for key in want:
      np.testing.assert_array_equal(got[key], want[key], err_msg=key)


@pytest.mark.parametrize("packing", [None, PACKING], ids=["unpacked", "packed"])
def test_restored_iterator_continues_with_exactly_the_same_batches(synthetic_data_dir, packing):
  pre = make_preprocessor(synthetic_data_dir, list(MIX))
  make = lambda: iter(pipeline.train_dataset(MIX, synthetic_data_dir, pre, batch_size=4, seed=3,
                                             packing=packing))
  assert_resumes_exactly(make, skip=3)
  # Same seed, fresh iterator: the same stream; another seed: a different one.
  again = next(make())
  other = next(iter(pipeline.train_dataset(MIX, synthetic_data_dir, pre, batch_size=4, seed=4,
                                           packing=packing)))
  first = next(make())
  np.testing.assert_array_equal(again["tokens"], first["tokens"])
  assert (other["tokens"] != first["tokens"]).any()


# At max_prompt=32 the report prompts lose their image (dropped), the VQA prompts keep theirs and
# PubMedQA's are cut: every kind of example a packed row must carry.
PACK_MIX = {"synthetic_vqa_rad": 1.0, "synthetic_pubmedqa": 1.0, "synthetic_mimic_cxr_report": 1.0}


def _example_key(tokens, images, fields):
  return (tuple(int(t) for t in tokens), tuple(image.tobytes() for image in images),
          tuple(int(fields[k]) for k in pipeline.EXAMPLE_FIELDS))


def test_packed_rows_hold_the_same_examples_whole_in_stream_order(synthetic_data_dir):
  pre = make_preprocessor(synthetic_data_dir, list(PACK_MIX), max_prompt=32)
  packed = iter(pipeline.train_dataset(PACK_MIX, synthetic_data_dir, pre, batch_size=4, seed=0,
                                       packing=PACKING))
  got = []
  for _ in range(3):
    batch = next(packed)
    for row in range(4):
      segments, images = batch["segment_ids"][row], list(batch["images"][row])
      valid = batch["example_valid"][row]
      assert valid[: valid.sum()].all(), "filled entries come first"
      for j in range(int(valid.sum())):
        where = segments == j + 1
        tokens = batch["tokens"][row][where]
        np.testing.assert_array_equal(batch["positions"][row][where], np.arange(where.sum()))
        assert batch["input_mask"][row][where].all()
        num_images = int((tokens == tok.IMAGE_ID).sum()) // pre.spec.image_slots
        mine, images = images[:num_images], images[num_images:]
        got.append(_example_key(tokens, mine, {k: batch[k][row][j] for k in pipeline.EXAMPLE_FIELDS}))
      assert not batch["input_mask"][row][segments == 0].any()
      assert all(not image.any() for image in images), "unused image slots are empty"
  # Each batch is one emission of the packer: together they are the stream's next examples.
  plain = next(iter(pipeline.train_dataset(PACK_MIX, synthetic_data_dir, pre, batch_size=len(got), seed=0)))
  want = []
  for i in range(len(got)):
    length = int(plain["input_mask"][i].sum())
    num_images = int((plain["tokens"][i][:length] == tok.IMAGE_ID).sum()) // pre.spec.image_slots
    want.append(_example_key(plain["tokens"][i][:length], plain["images"][i][:num_images],
                             {k: plain[k][i] for k in pipeline.EXAMPLE_FIELDS}))
  assert sorted(got) == sorted(want)
  assert len(got) > 12, "rows hold more than one example"
  dropped = [key for key in want if key[2][pipeline.EXAMPLE_FIELDS.index("dropped")]]
  assert dropped and all(not key[0] for key in dropped), "dropped examples are counted, with no tokens"
  assert any(key[1] for key in want), "some examples carry an image"


def test_packing_config_is_checked_by_key():
  assert pipeline.Packing.from_config({"max_images": 1}) is None
  assert pipeline.Packing.from_config({"max_images": 1, "packing": {"enabled": False}}) is None
  on = {"enabled": True, "images_per_row": 2, "examples_per_row": 4}
  assert pipeline.Packing.from_config({"max_images": 1, "packing": on}) == pipeline.Packing(2, 4)
  with pytest.raises(ValueError, match="config.data.packing.images_per_row=2 is below "
                                       "config.data.max_images=3"):
    pipeline.Packing.from_config({"max_images": 3, "packing": on})
  with pytest.raises(ValueError, match="config.data.packing.examples_per_row must be >= 1"):
    pipeline.Packing.from_config({"max_images": 1, "packing": {**on, "examples_per_row": 0}})


def test_process_shards_are_disjoint_and_cover_the_global_stream(synthetic_data_dir):
  pre = make_preprocessor(synthetic_data_dir, list(MIX))
  def rows(index, count, batches):
    it = iter(pipeline.train_dataset(MIX, synthetic_data_dir, pre, batch_size=8, seed=0,
                                     process_index=index, process_count=count))
    return [tuple(row) for _ in range(batches) for row in next(it)["tokens"]]
  whole = rows(0, 1, 4)  # 32 examples
  shard0, shard1 = rows(0, 2, 4), rows(1, 2, 4)  # 16 each
  assert shard0 == whole[0::2] and shard1 == whole[1::2]
  assert not set(shard0) & set(shard1) or len(set(whole)) < len(whole)


def test_bad_mixtures_are_refused_with_the_config_key():
  with pytest.raises(ValueError, match=r"config.data.mixture: unknown task\(s\) 'synthetic_medqz' "
                     r"\(did you mean 'synthetic_medqa'\?\)"):
    mixtures.normalize({"synthetic_medqz": 1.0, "synthetic_medqa": 1.0})
  with pytest.raises(ValueError, match="must be finite and >= 0"):
    mixtures.normalize({"synthetic_medqa": -1.0})
  with pytest.raises(ValueError, match="all weights are zero"):
    mixtures.normalize({"synthetic_medqa": 0.0, "synthetic_slake": 0})
  with pytest.raises(ValueError, match="is empty"):
    mixtures.normalize({})
  assert mixtures.normalize({"synthetic_medqa": 3, "synthetic_slake": 1}) == {
      "synthetic_medqa": 0.75, "synthetic_slake": 0.25}
  assert mixtures.examples_proportional({"synthetic_medqa": 100, "synthetic_slake": 10_000}, cap=400) == {
      "synthetic_medqa": 0.2, "synthetic_slake": 0.8}


def test_missing_data_names_the_builder_and_how_to_build_it(tmp_path):
  with pytest.raises(pipeline.MissingDataError, match=r"synthetic_medqa.*medpalm_m.data build"):
    pipeline.TaskSource(tasks.get("synthetic_medqa"), "train", str(tmp_path))


class _TinyTestBuilder(base.SyntheticBuilder):
  SPLIT_SIZES = {"train": 3}

  def features(self):
    import tensorflow_datasets as tfds
    return tfds.features.FeaturesDict({"id": tfds.features.Text(), "text": tfds.features.Text()})

  def generate(self, rng, index, split):
    return {"text": f"record {index} {rng.integers(1000)}"}


def test_an_empty_split_is_reported_with_the_task(tmp_path):
  # TFDS itself refuses to write an empty split, so an empty one comes from a split spec (or a
  # user's filtered copy) that selects nothing.
  task = tasks.register(tasks.Task(
      name="test_only_empty", builder=_TinyTestBuilder, metrics=("accuracy",),
      formatter=lambda r, e: {"id": r["id"], "images": [], "prompt": r["text"], "target": "x"},
      splits={"train": "train", "test": "train[:0]"}))
  _TinyTestBuilder(data_dir=str(tmp_path)).download_and_prepare()
  assert len(pipeline.TaskSource(task, "train", str(tmp_path))) == 3
  with pytest.raises(preprocess.ExampleError, match=r"test_only_empty.*split 'test'.*is empty"):
    pipeline.TaskSource(task, "test", str(tmp_path))
  with pytest.raises(ValueError, match="test_only_empty' has no 'validation' split"):
    pipeline.TaskSource(task, "validation", str(tmp_path))


def test_overlong_prompts_and_targets_are_counted_never_silent(synthetic_data_dir):
  pre = make_preprocessor(synthetic_data_dir, ["t"], max_prompt=24, max_target=3)
  text = " ".join(["the findings are normal"] * 20)
  features = pre({"id": "a", "task": "t", "images": [], "prompt": text + " Q: ok? A:", "target": text})
  assert features["prompt_truncated"] and features["target_truncated"] and not features["dropped"]
  assert features["mask_loss"].sum() == 4  # 3 target tokens + EOS
  # The question at the end survives left truncation.
  assert "A:" in pre.tokenizer.decode(features["tokens"][: features["prompt_length"]])
  image = np.zeros((40, 40), np.uint8)
  dropped = pre({"id": "b", "task": "t", "images": [image], "prompt": "Given <img>. " + text, "target": "x"})
  assert dropped["dropped"] and not dropped["input_mask"].any() and not dropped["mask_loss"].any()


def test_images_keep_aspect_ratio_with_zero_padding_and_gray_becomes_rgb():
  tall = np.full((100, 50), 200, np.uint8)
  out = preprocess.resize_with_pad(preprocess.to_rgb(tall), 64)
  assert out.shape == (64, 64, 3)
  assert (out[:, :16] == 0).all() and (out[:, -16:] == 0).all() and (out[:, 16:48] == 200).all()
  with pytest.raises(preprocess.ExampleError, match="example 'e1'.*float64"):
    preprocess.to_rgb(np.zeros((4, 4)), {"id": "e1", "task": "t"})


def test_an_imported_checkpoints_layout_stretches_and_puts_bos_after_the_images(synthetic_data_dir):
  """PaliGemma's processor: stretched bicubic pixels, `<image slots> [BOS] prompt \\n`; a cut
  keeps [BOS] after the image, and one that would cut the image drops the example."""
  pre = make_preprocessor(synthetic_data_dir, ["t"], max_prompt=24, max_target=3)
  layout = preprocess.PromptLayout(bos_after_images=True, prompt_end="\n")
  spec = dataclasses.replace(pre.spec, image_resize="stretch", image_resample="bicubic",
                             prompt_layout=layout)
  pali = preprocess.Preprocessor(pre.tokenizer, spec, {"t": 0})
  tall = np.full((100, 50), 200, np.uint8)
  features = pali({"id": "a", "task": "t", "images": [tall], "prompt": "<img>no effusion", "target": "x"})
  slots = spec.image_slots
  prompt = features["tokens"][:features["prompt_length"]].tolist()
  assert prompt[:slots + 1] == [tok.IMAGE_ID] * slots + [tok.BOS_ID]
  assert prompt[slots + 1:] == pre.tokenizer.encode("no effusion\n")
  assert (features["images"][0] == 200).all()  # stretched: no padding
  own = pre({"id": "a", "task": "t", "images": [tall], "prompt": "<img>no effusion", "target": "x"})
  assert own["tokens"][0] == tok.BOS_ID and (own["images"][0][:, 0] == 0).all()  # padded
  long = pali({"id": "b", "task": "t", "images": [tall], "prompt": "<img>" + "no effusion " * 9,
               "target": "x"})
  assert long["dropped"]
  with pytest.raises(ValueError, match="config.data.image_resize is 'crop'"):
    dataclasses.replace(spec, image_resize="crop")


def test_corrupt_image_files_are_refused_with_their_name(tmp_path):
  bad = tmp_path / "broken.png"
  bad.write_bytes(b"\x89PNG\r\n\x1a\n not really")
  with pytest.raises(images.ImageError, match="broken.png"):
    images.read_image(bad)
  with pytest.raises(images.ImageError, match="does not exist"):
    images.read_image(tmp_path / "missing.jpg")


def _write_dicom(path, pixels, photometric):
  meta = FileMetaDataset()
  meta.TransferSyntaxUID = ExplicitVRLittleEndian
  meta.MediaStorageSOPClassUID = pydicom.uid.SecondaryCaptureImageStorage
  meta.MediaStorageSOPInstanceUID = generate_uid()
  ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
  ds.Rows, ds.Columns = pixels.shape
  ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, photometric
  ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
  ds.PixelData = pixels.astype(np.uint16).tobytes()
  ds.save_as(str(path), enforce_file_format=True)


def test_dicom_monochrome1_is_inverted_and_12_bit_scaled_to_8(tmp_path):
  ramp = np.tile(np.linspace(0, 4095, 16).astype(np.uint16), (8, 1))
  _write_dicom(tmp_path / "m2.dcm", ramp, "MONOCHROME2")
  _write_dicom(tmp_path / "m1.dcm", ramp, "MONOCHROME1")
  m2, m1 = images.read_image(tmp_path / "m2.dcm"), images.read_image(tmp_path / "m1.dcm")
  assert m2.dtype == np.uint8 and m2[0, 0] == 0 and m2[0, -1] == 255
  np.testing.assert_array_equal(m1, 255 - m2)


def test_literal_img_text_never_becomes_an_image_slot(synthetic_data_dir):
  tokenizer = tok.Tokenizer(tokenizer_path(synthetic_data_dir))
  assert tok.IMAGE_ID not in tokenizer.encode("Given <img>. Q: what?")
  prompt = "Given " + tok.escape_image_markers("<img>") + ". A: no. Given <img>. Q: what? A:"
  ids, n = tokenizer.encode_prompt(prompt, image_slots=5)
  assert n == 1 and ids.count(tok.IMAGE_ID) == 5
  assert "<img>" in tokenizer.decode(ids)  # the exemplar's literal text is still there


def test_ids_past_the_tokenizer_decode_as_unknown(synthetic_data_dir):
  # An imported model's embedding table can be larger than its tokenizer (Gemma's is).
  tokenizer = tok.Tokenizer(tokenizer_path(synthetic_data_dir))
  ids = tokenizer.encode("no effusion")
  past = tokenizer.vocab_size + 7
  assert tokenizer.decode(ids + [past] + ids) == f"no effusion<unk:{past}>no effusion"
  assert tokenizer.piece(past) == f"<unk:{past}>" and tokenizer.piece(ids[0]) == tokenizer.sp.id_to_piece(ids[0])


# A dominant task and three rare ones: drawn per example, batches of 8 often miss a rare task.
EVERY_MIX = {"synthetic_mimic_cxr_report": 0.85, "synthetic_pad_ufes_20": 0.1, "synthetic_vqa_rad": 0.04,
             "synthetic_medqa": 0.01}
AUGMENTED = {"synthetic_pad_ufes_20": list(augment.PAD_UFES_20_OPS),
             "synthetic_mimic_cxr_report": list(augment.MAMMOGRAPHY_OPS)}


def augmentation(ops=AUGMENTED, seed=0):
  return augment.Augmentation.from_config({"ops": ops, "num_ops": 2, "magnitude": 9.0}, seed)


def test_every_task_counts_keep_the_weights_and_give_each_task_one():
  assert pipeline.every_task_counts([0.85, 0.1, 0.04, 0.01], 8) == [5, 1, 1, 1]
  assert pipeline.every_task_counts([1, 1, 1], 3) == [1, 1, 1]
  from configs.mixtures import multimedbench
  weights = list(multimedbench.MIXTURE.values())
  counts = pipeline.every_task_counts(weights, 128)
  assert sum(counts) == 128 and min(counts) == 1
  total = sum(weights)
  for w, n in zip(weights, counts):
    assert abs(n - max(w / total * 128, 1)) <= 1, (w, n)
  with pytest.raises(ValueError, match="a batch of 3 cannot hold all 4 tasks"):
    pipeline.every_task_counts([1, 1, 1, 1], 3)


def test_every_task_option_puts_all_four_tasks_in_each_of_50_batches(synthetic_data_dir):
  pre = make_preprocessor(synthetic_data_dir, list(EVERY_MIX))
  def tasks_per_batch(every_task):
    it = iter(pipeline.train_dataset(EVERY_MIX, synthetic_data_dir, pre, batch_size=8, seed=0,
                                     every_task_per_batch=every_task))
    return [set(next(it)["task_id"].tolist()) for _ in range(50)]
  assert all(found == {0, 1, 2, 3} for found in tasks_per_batch(True))
  assert any(found != {0, 1, 2, 3} for found in tasks_per_batch(False)), "the check can fail"
  with pytest.raises(ValueError, match="every_task_per_batch needs config.data.packing.enabled=False"):
    pipeline.train_dataset(EVERY_MIX, synthetic_data_dir, pre, batch_size=8, seed=0,
                           every_task_per_batch=True, packing=PACKING)


def test_every_task_shards_are_slices_of_the_global_batches(synthetic_data_dir):
  pre = make_preprocessor(synthetic_data_dir, list(EVERY_MIX))
  def rows(index, count):
    it = iter(pipeline.train_dataset(EVERY_MIX, synthetic_data_dir, pre, batch_size=8, seed=0,
                                     process_index=index, process_count=count, every_task_per_batch=True))
    return [tuple(row) for _ in range(3) for row in next(it)["tokens"]]
  whole = rows(0, 1)
  assert rows(0, 2) == whole[0::2][:12] and rows(1, 2) == whole[1::2][:12]


def test_resume_with_every_task_and_augmentation_is_exact(synthetic_data_dir):
  pre = make_preprocessor(synthetic_data_dir, list(EVERY_MIX))
  make = lambda: iter(pipeline.train_dataset(EVERY_MIX, synthetic_data_dir, pre, batch_size=8, seed=3,
                                             every_task_per_batch=True, augmentation=augmentation(seed=3)))
  assert_resumes_exactly(make, skip=4)


def test_augmentation_changes_training_images_of_its_tasks_only_and_never_evaluation(synthetic_data_dir):
  pre = make_preprocessor(synthetic_data_dir, list(EVERY_MIX))
  ids = pipeline.task_ids(list(EVERY_MIX))
  stream = lambda aug: iter(pipeline.train_dataset(EVERY_MIX, synthetic_data_dir, pre, batch_size=8, seed=0,
                                                   every_task_per_batch=True, augmentation=aug))
  plain, augmented = stream(None), stream(augmentation())
  changed = {name: 0 for name in EVERY_MIX}
  for _ in range(5):
    a, b = next(plain), next(augmented)
    np.testing.assert_array_equal(a["tokens"], b["tokens"])  # the same examples, in the same order
    for row, task_id in enumerate(a["task_id"]):
      name = next(n for n, i in ids.items() if i == task_id)
      changed[name] += int(not np.array_equal(a["images"][row], b["images"][row]))
  assert changed["synthetic_pad_ufes_20"] == 5 and changed["synthetic_mimic_cxr_report"] >= 20
  assert changed["synthetic_vqa_rad"] == 0 and changed["synthetic_medqa"] == 0
  # Evaluation reads the stored images as they are, on the test split and the train split alike.
  task = tasks.get("synthetic_pad_ufes_20")
  for split in ("test", "train"):
    source = pipeline.TaskSource(task, split, synthetic_data_dir)
    for i, example in enumerate(pipeline.eval_examples(task, synthetic_data_dir, split, max_examples=4)):
      np.testing.assert_array_equal(example["images"][0], source[i]["images"][0])


def test_augmentation_is_a_function_of_seed_and_position():
  image = np.random.default_rng(0).integers(0, 256, (40, 30, 3), dtype=np.uint8)
  example = {"task": "synthetic_pad_ufes_20", "images": [image]}
  aug = augmentation()
  first = aug(7, example)["images"][0]
  assert first.shape == image.shape and first.dtype == np.uint8
  np.testing.assert_array_equal(aug(7, example)["images"][0], first)
  assert not np.array_equal(aug(8, example)["images"][0], first)
  assert not np.array_equal(augmentation(seed=1)(7, example)["images"][0], first)
  gray = {"task": "synthetic_mimic_cxr_report", "images": [image[..., :1]]}
  assert aug(7, gray)["images"][0].shape == (40, 30, 1)
  with pytest.raises(ValueError, match=r"ops\['synthetic_pad_ufes_20'\] has unknown operation\(s\) \['blur'\]"):
    augmentation({"synthetic_pad_ufes_20": ["blur"]})
  with pytest.raises(ValueError, match=r"names unknown task\(s\) \['pad_ufes'\]"):
    augmentation({"pad_ufes": ["rotate"]})
  assert augmentation({}) is None


OPENING = pipeline.Opening(examples=12, mixture={"synthetic_medqa": 1.0})


def test_the_opening_draws_its_examples_then_the_main_mixture_continues_unchanged(synthetic_data_dir):
  pre = make_preprocessor(synthetic_data_dir, list(MIX))
  medqa = pipeline.task_ids(list(MIX))["synthetic_medqa"]
  def batches(opening, n):
    it = iter(pipeline.train_dataset(MIX, synthetic_data_dir, pre, batch_size=4, seed=3, opening=opening))
    return [next(it) for _ in range(n)]
  opened, plain = batches(OPENING, 5), batches(None, 2)
  # 12 examples = the first 3 batches of 4, all MedQA (a task with 10% of the main mixture).
  assert all((b["task_id"] == medqa).all() for b in opened[:3])
  # Then the main mixture from its own first example, as a run without an opening starts.
  for got, want in zip(opened[3:], plain):
    np.testing.assert_array_equal(got["tokens"], want["tokens"])
  # The opening's MedQA is shuffled apart from the main phase's MedQA stream.
  main_medqa = [tuple(r) for b in batches(None, 40) for r, t in zip(b["tokens"], b["task_id"]) if t == medqa]
  assert [tuple(r) for r in opened[0]["tokens"]] != main_medqa[:4]


@pytest.mark.parametrize("skip", [2, 4], ids=["within", "after"])
def test_resume_within_and_after_the_opening_is_exact(synthetic_data_dir, skip):
  pre = make_preprocessor(synthetic_data_dir, list(MIX))
  make = lambda: iter(pipeline.train_dataset(MIX, synthetic_data_dir, pre, batch_size=4, seed=3,
                                             packing=PACKING, opening=OPENING))
  assert_resumes_exactly(make, skip=skip)


def test_opening_config_is_checked_by_key():
  data = {"mixture": {"synthetic_medqa": 1.0, "synthetic_slake": 0.0}, "opening": {"examples": 0, "mixture": {}}}
  assert pipeline.Opening.from_config(data) is None
  data["opening"] = {"examples": 10, "mixture": {"synthetic_medqa": 3}}
  assert pipeline.Opening.from_config(data) == pipeline.Opening(10, {"synthetic_medqa": 1.0})
  with pytest.raises(ValueError, match=r"config.data.opening.mixture: task\(s\) \['synthetic_slake'\] "
                                       "are not in config.data.mixture"):
    pipeline.Opening.from_config({**data, "opening": {"examples": 10, "mixture": {"synthetic_slake": 1}}})
  with pytest.raises(ValueError, match="config.data.opening.mixture is empty"):
    pipeline.Opening.from_config({**data, "opening": {"examples": 10, "mixture": {}}})
  with pytest.raises(ValueError, match="config.data.opening.examples must be >= 0"):
    pipeline.Opening.from_config({**data, "opening": {"examples": -1, "mixture": {}}})
  with pytest.raises(ValueError, match="every_task_per_batch=False"):
    pipeline.Opening.from_config({**data, "every_task_per_batch": True})


def test_upsampling_repeats_each_example_of_the_named_answer_and_nothing_else(synthetic_data_dir):
  task = tasks.get("synthetic_mimic_cxr_classification")
  plain = pipeline.TaskSource(task, "train", synthetic_data_dir)
  upsampled = pipeline.TaskSource(task, "train", synthetic_data_dir, copies_by_label={1: 3})
  labels = [plain[i]["label"] for i in range(len(plain))]
  positives = sum(labels)
  assert 0 < positives < len(plain)
  assert len(upsampled) == len(plain) + 2 * positives
  seen = collections.Counter((ex["id"], ex["prompt"]) for ex in (upsampled[i] for i in range(len(upsampled))))
  for i in range(len(plain)):
    assert seen[(plain[i]["id"], plain[i]["prompt"])] == (3 if labels[i] == 1 else 1)
  # Evaluation never goes through it: the test split is read as built.
  assert len(pipeline.eval_examples(task, synthetic_data_dir)) == len(pipeline.TaskSource(task, "test", synthetic_data_dir))


def test_upsampling_config_is_checked_by_key():
  mixture = {"synthetic_mimic_cxr_classification": 1.0, "synthetic_medqa": 1.0}
  ok = pipeline.Upsampling.from_config(dict(mixture=mixture, upsample={"synthetic_mimic_cxr_classification": {"Yes": 2}}))
  assert ok.copies == {"synthetic_mimic_cxr_classification": {1: 2}}
  assert pipeline.Upsampling.from_config(dict(mixture=mixture, upsample={})).copies == {}
  # Registered but not trained (a config derived from tiny's with another mixture): nothing to do.
  untrained = {"synthetic_vindr_mammo": {"3": 3}}
  assert pipeline.Upsampling.from_config(dict(mixture=mixture, upsample=untrained)).copies == {}
  bad = [({"synthetic_slak": {"Yes": 2}}, r"upsample\['synthetic_slak'\]: unknown task"),
         ({"synthetic_vindr_mammo": {"Yes": 2}}, r"'Yes' is not one of the task's options"),
         ({"synthetic_mimic_cxr_classification": {"Maybe": 2}}, r"'Maybe' is not one of the task's options"),
         ({"synthetic_mimic_cxr_classification": {"Yes": 0}}, r"\['Yes'\] must be a whole number of copies"),
         ({"synthetic_mimic_cxr_classification": {"Yes": 1.5}}, r"whole number"),
         ({"synthetic_medqa": {"A": 2}}, r"upsample\['synthetic_medqa'\].*no answer options")]
  for upsample, message in bad:
    with pytest.raises(ValueError, match=message):
      pipeline.Upsampling.from_config(dict(mixture=mixture, upsample=upsample))
