"""Chapter 4's adequacy baselines (studies.ndm_2d): the structure metric tells data from a moment-matched Gaussian."""

import math

import pytest
import torch
from diffusion_study.data.toy2d import toy_split
from diffusion_study.studies import ndm_2d


@pytest.mark.parametrize("name", list(ndm_2d.STRUCTURE))
def test_data_beat_their_gaussian_fit_on_the_structure_metric(name):
    train, test = toy_split(name, 3000, 1000, seed=0)
    gauss = ndm_2d.gaussian_samples(train[:, None], 1000, seed=1)  # one member
    assert gauss.shape == (1, 1000, 2)
    data_score, gauss_score = float(ndm_2d.structure(name, test)), float(ndm_2d.structure(name, gauss)[0])
    higher = ndm_2d.STRUCTURE[name][1]
    assert (data_score > gauss_score + 0.2) if higher else (data_score < gauss_score - 1.0)


def test_structure_keeps_the_batch_dims():
    x = torch.stack([toy_split("checkerboard", 10, 200, seed=s)[1] for s in range(3)])
    assert ndm_2d.structure("checkerboard", x).shape == (3,)


def test_gaussian_nll_is_above_the_exact_nll():
    train, test = toy_split("checkerboard", 5000, 2000, seed=0)
    nll = ndm_2d.gaussian_nll(train[:, None], test[None])
    assert nll.shape == (1,)
    assert float(nll[0]) > math.log(8.0) + 0.5  # uniform on 8 unit squares: log 8
