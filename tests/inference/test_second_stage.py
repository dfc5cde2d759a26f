"""The Detector's second stage (re-scoring candidates), with a stand-in rescorer over blob detections."""

from __future__ import annotations

import numpy as np

from mitodet.models.rescorer import RescorerConfig


class _DarknessRescorer:
    """A stand-in second stage: the probability is the darkness of the patch centre."""

    def __init__(self, **cfg) -> None:
        self.config = RescorerConfig(**cfg)
        self.seen = 0

    def eval(self):
        return self

    def probabilities(self, patches):
        self.seen += len(patches)
        c = patches.shape[1] // 2
        return 1.0 - patches[:, c, c].mean(axis=1) / 255.0


def test_detector_runs_the_second_stage(dh, one_thread):
    BlobDetector, disc_image = dh.BlobDetector, dh.disc_image
    img = disc_image((200, 200), [(50, 50), (150, 120)], radius=6)
    plain = BlobDetector(mpp=0.5).detect_array(img, 0.25, threshold=0.0)
    assert len(plain) == 2 and plain.first_scores is None
    r = _DarknessRescorer(patch_px=16, mpp=0.25, threshold=0.6, min_candidate_score=0.5)
    det = BlobDetector(mpp=0.5, rescorer=r)
    assert det.threshold == 0.6  # the pipeline's threshold is the second stage's
    found = det.detect_array(img, 0.25, threshold=0.0)
    assert r.seen == 2 and len(found) == 2
    np.testing.assert_allclose(found.first_scores, 0.9)  # the blob detector's scores travel along
    assert (found.scores > 0.6).all() and found.info["n_rescored"] == 2
    assert found.above(0.99).first_scores.shape == (len(found.above(0.99)),)
    # candidates below min_candidate_score never reach the second stage
    r2 = _DarknessRescorer(patch_px=16, mpp=0.25, min_candidate_score=0.95)
    assert len(BlobDetector(mpp=0.5, rescorer=r2).detect_array(img, 0.25, threshold=0.0)) == 0 and r2.seen == 0
