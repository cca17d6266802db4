"""Chapter 1's algebra, proved by sympy."""

from diffusion_study.core import symbolic as sym


def test_completing_the_square_gives_the_ddpm_posterior():
    mean, var = sym.posterior_by_completing_the_square()
    mean_ref, var_ref = sym.ddpm_posterior_closed_form()
    assert sym.is_zero(mean - mean_ref)
    assert sym.is_zero(var - var_ref)


def test_eps_form_weight():
    derived, stated = sym.eps_form_kl_weight()
    assert sym.is_zero(derived - stated)


def test_posterior_mean_coefficients_are_ddpms():
    mean, _ = sym.posterior_by_completing_the_square()
    c_x0, c_xt = sym.affine_coefficients(mean)
    ref_x0, ref_xt = sym.affine_coefficients(sym.ddpm_posterior_closed_form()[0])
    assert sym.is_zero(c_x0 - ref_x0) and sym.is_zero(c_xt - ref_xt)
