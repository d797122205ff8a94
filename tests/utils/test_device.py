"""Device specs: what ``resolve_device`` accepts, and one clear error for the rest."""

from __future__ import annotations

import pytest
import torch

from kgzsl.errors import InputError
from kgzsl.utils.device import resolve_device


def test_auto_and_cpu_in_any_case():
    expected = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("auto") == resolve_device(None) == resolve_device(" Auto ") == expected
    assert resolve_device("CPU") == resolve_device(torch.device("cpu")) == torch.device("cpu")


@pytest.mark.parametrize("spec", ["gpu", "cuda:x", "bogus", "cpu cpu"])
def test_a_spec_that_is_no_device_is_one_input_error(spec):
    with pytest.raises(InputError, match=rf"^unknown device '{spec}'; use 'auto', 'cpu' or 'cuda' \(or 'cuda:N'\)$"):
        resolve_device(spec)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_a_gpu_says_so():
    with pytest.raises(InputError, match="'cuda:1' was asked for but CUDA is not available"):
        resolve_device("cuda:1")


@pytest.mark.skipif(torch.backends.mps.is_available(), reason="needs a machine without MPS")
def test_a_device_this_build_lacks_is_an_input_error():
    with pytest.raises(InputError, match=r"^device 'mps' is not available here \(.+\); use 'auto', 'cpu'"):
        resolve_device("mps")


def test_hugging_faces_integer_devices():
    assert resolve_device(-1) == torch.device("cpu")  # the pipelines' CPU
    with pytest.raises(InputError, match="unknown device -2"):
        resolve_device(-2)
