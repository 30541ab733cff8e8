"""ForcedPhotConfig: every parameter checked for type and range (bounds that keep every kernel
finite in time), config files read with errors naming the file."""

from __future__ import annotations

import pytest

from colphot.config import ForcedPhotConfig


@pytest.mark.parametrize(("kwargs", "error", "message"), [
    ({"subpixels": 100000}, ValueError, r"subpixels: expected an integer in \[1, 64\]"),
    ({"subpixels": 2.5}, TypeError, r"subpixels: expected an integer, got 2.5"),
    ({"subpixels": True}, TypeError, r"subpixels: expected an integer"),
    ({"aperture_radii": "3, 6"}, TypeError, r"aperture_radii: expected a list of radii"),
    ({"aperture_radii": [3, float("nan")]}, ValueError, r"aperture_radii: expected a number"),
    ({"aperture_radii": [3, 1e9]}, ValueError, r"aperture_radii: expected a number in"),
    ({"aperture_radii": [3, "6"]}, TypeError, r"aperture_radii: expected a number"),
    ({"aperture_radii": []}, ValueError, r"aperture_radii: need distinct positive radii"),
    ({"plugins": "psf_flux"}, TypeError, r"plugins: expected a list of names"),
    ({"psf_bad_mask_planes": "BAD"}, TypeError, r"psf_bad_mask_planes: expected a list"),
    ({"local_background_n_sigma": -3}, ValueError, r"local_background_n_sigma: expected"),
    ({"local_background_n_iter": -1}, ValueError, r"local_background_n_iter: expected an"),
    ({"local_background_outer": float("inf")}, ValueError, r"local_background_outer"),
    ({"local_background_inner": 20.0}, ValueError, r"need 0 < inner < outer"),
    ({"footprint_radius": 10**9}, ValueError, r"footprint_radius: expected a number in"),
    ({"noise_offset": float("nan")}, ValueError, r"noise_offset: expected a number"),
    ({"noise_seed": -1}, ValueError, r"noise_seed: expected an integer in"),
    ({"conserve_flux": "yes"}, ValueError, r"conserve_flux: expected true or false"),
])
def test_bad_parameters_raise_naming_them(kwargs, error, message):
    with pytest.raises(error, match=message):
        ForcedPhotConfig(**kwargs)


def test_valid_values_are_normalised():
    c = ForcedPhotConfig(subpixels=5.0, aperture_radii=[6, 3], local_background_n_iter=3.0)
    assert c.subpixels == 5 and isinstance(c.subpixels, int)
    assert c.aperture_radii == (3.0, 6.0)
    assert ForcedPhotConfig.from_dict(c.to_dict()) == c


@pytest.mark.parametrize(("text", "error", "message"), [
    ("subpixels: [1, 2\n", ValueError, r"cfg\.yaml: not a YAML/JSON file at line 2"),
    ("- 1\n- 2\n", ValueError, r"cfg\.yaml: a config file holds a mapping"),
    ("subpixel: 5\n", ValueError, r"cfg\.yaml: config: unknown parameter\(s\) \['subpixel'\]"),
    ("subpixels: 2.5\n", TypeError, r"cfg\.yaml: subpixels: expected an integer"),
    ("aperture_radii: 3\n", TypeError, r"cfg\.yaml: aperture_radii: expected a list"),
])
def test_config_files_name_the_file(tmp_path, text, error, message):
    path = tmp_path / "cfg.yaml"
    path.write_text(text)
    with pytest.raises(error, match=message):
        ForcedPhotConfig.from_file(path)
