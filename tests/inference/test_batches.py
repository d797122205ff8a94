"""classify_images: batches of images through a candidate head, one record per image."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from kgzsl.inference.batches import classify_images, top_candidates
from kgzsl.inference.head import LinearHead
from kgzsl.inference.labels import ResolvedLabel


class _MeanColour:
    """A backbone whose pooled feature is an image's mean red, green and blue."""

    device = torch.device("cpu")

    @staticmethod
    def transform(image: Image.Image) -> torch.Tensor:
        return torch.from_numpy(np.asarray(image.convert("RGB").resize((4, 4)), dtype=np.float32) / 255).permute(2, 0, 1)

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        return batch.mean(dim=(2, 3))


LABELS = [ResolvedLabel("red", 0, "r", "red.n.01"), ResolvedLabel("green", 1, "g", "green.n.01"),
          ResolvedLabel("blue", 2, "b", "blue.n.01")]
ROWS = torch.cat([10 * torch.eye(3), torch.zeros(3, 1)], dim=1)  # logit = 10 x the channel's mean


def _image(rgb: tuple[int, int, int]) -> Image.Image:
    return Image.new("RGB", (8, 8), rgb)


def test_each_image_gets_its_best_candidates_and_a_bad_one_only_an_error(tmp_path):
    missing = tmp_path / "missing.png"
    images = [_image((250, 0, 0)), missing, _image((0, 0, 250)), _image((0, 240, 10))]
    records = classify_images(_MeanColour(), LinearHead(ROWS), LABELS, images, k=2, wnids=["r", "g", "b"],
                              names=["red.n.01", "green.n.01", "blue.n.01"], batch_size=3)
    assert [r.get("predictions", [{}])[0].get("label") for r in records] == ["red", None, "blue", "green"]
    assert "error" in records[1] and "missing.png" in records[1]["error"] and "predictions" not in records[1]
    first = records[0]["predictions"]
    assert [p["synset"] for p in first] == ["red.n.01", "green.n.01"] and len(first) == 2
    assert first[0]["score"] > 0.99 and "abstained" not in records[0]


def test_a_transformed_tensor_batch_and_the_abstain_threshold():
    batch = torch.stack([_MeanColour.transform(_image(c)) for c in ((200, 0, 0), (60, 50, 40))])
    records = classify_images(_MeanColour(), LinearHead(ROWS), LABELS, batch, k=1, wnids=["r", "g", "b"],
                              names=["red.n.01", "green.n.01", "blue.n.01"], abstain={"threshold": 5.0})
    assert [r["image"] for r in records] == ["tensor[0]", "tensor[1]"]
    assert records[0]["abstained"] is False and records[0]["max_logit"] > 7  # 10 * 200/255
    assert records[1]["abstained"] is True and records[1]["max_logit"] < 5  # a dull image: nothing fits


def test_labels_with_several_senses_report_the_sense_that_scored():
    class TwoSenses:  # label 0 has senses 0 and 2; label 1 has sense 1
        senses = [[0, 2], [1]]

        def choose(self, features):
            logits = features @ ROWS[:, :-1].T
            sense = torch.stack([logits[:, [0, 2]].max(1).indices, torch.zeros(len(features), dtype=torch.long)], 1)
            return torch.stack([logits[:, [0, 2]].max(1).values, logits[:, 1]], 1), sense

    labels = [ResolvedLabel("warm or cold", 0, "r", "red.n.01"), ResolvedLabel("green", 1, "g", "green.n.01")]
    features = torch.tensor([[0.0, 0.1, 0.9], [0.8, 0.1, 0.0]])
    scores, top, best, nodes = top_candidates(TwoSenses(), labels, features, 1)
    assert top[:, 0].tolist() == [0, 0] and nodes == [[2], [0]]  # the blue sense for the first, red for the second
    torch.testing.assert_close(best[:, 0], torch.tensor([9.0, 8.0]))
