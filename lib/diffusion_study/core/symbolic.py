"""Symbolic (sympy) derivations of chapter 1: the posterior by completing the square, the eps-form weight.

Each function returns sympy expressions that the chapter prints and the tests compare
with the closed forms used in `processes` and `objectives`.
"""

from __future__ import annotations

import sympy as sp

# Positive symbols so that sqrt and log simplify: beta_t, alpha_bar_{t-1} in (0, 1).
beta = sp.Symbol(r"\beta_t", positive=True)
abar_prev = sp.Symbol(r"\bar{\alpha}_{t-1}", positive=True)
x0, xt, x = sp.symbols("x_0 x_t x_{t-1}", real=True)
alpha = 1 - beta
abar = alpha * abar_prev


def posterior_by_completing_the_square() -> tuple[sp.Expr, sp.Expr]:
    """(mean, variance) of q(x_{t-1}|x_t,x_0) propto q(x_t|x_{t-1}) q(x_{t-1}|x_0), in 1-D.

    log q = -(x_t - sqrt(alpha) x)^2 / (2 beta) - (x - sqrt(abar_prev) x0)^2 / (2 (1 - abar_prev)) + c
          = -(A x^2 - 2 B x) / 2 + c   =>   variance 1 / A, mean B / A.
    """
    log_q = -(xt - sp.sqrt(alpha) * x) ** 2 / (2 * beta) - (x - sp.sqrt(abar_prev) * x0) ** 2 / (2 * (1 - abar_prev))
    poly = sp.Poly(sp.expand(-2 * log_q), x)
    A = poly.coeff_monomial(x**2)
    B = -poly.coeff_monomial(x) / 2
    return sp.simplify(B / A), sp.simplify(1 / A)


def ddpm_posterior_closed_form() -> tuple[sp.Expr, sp.Expr]:
    """Ho et al. (2020), eq. 7: mu~ = sqrt(abar_{t-1}) beta/(1-abar) x0 + sqrt(alpha)(1-abar_{t-1})/(1-abar) x_t,
    beta~ = (1-abar_{t-1})/(1-abar) beta."""
    mean = sp.sqrt(abar_prev) * beta / (1 - abar) * x0 + sp.sqrt(alpha) * (1 - abar_prev) / (1 - abar) * xt
    return mean, (1 - abar_prev) / (1 - abar) * beta


def eps_form_kl_weight() -> tuple[sp.Expr, sp.Expr]:
    """(derived, stated) weight w in KL_t = w ||eps - eps_hat||^2 for reverse variance sigma^2.

    Derived from ||mu~(x0) - mu~(x0_hat)||^2 / (2 sigma^2) with x0 = (x_t - sqrt(1-abar) eps)/sqrt(abar);
    stated: beta^2 / (2 sigma^2 alpha (1 - abar)).
    """
    eps, eps_hat = sp.Symbol(r"\epsilon", positive=True), sp.Symbol(r"\hat{\epsilon}", positive=True)
    sigma2 = sp.Symbol(r"\sigma_t^2", positive=True)
    mean, _ = ddpm_posterior_closed_form()
    x0_of = lambda e: (xt - sp.sqrt(1 - abar) * e) / sp.sqrt(abar)  # noqa: E731
    diff = mean.subs(x0, x0_of(eps)) - mean.subs(x0, x0_of(eps_hat))
    derived = sp.simplify(diff**2 / (2 * sigma2) / (eps - eps_hat) ** 2)
    stated = beta**2 / (2 * sigma2 * alpha * (1 - abar))
    return derived, stated


def affine_coefficients(mean: sp.Expr) -> tuple[sp.Expr, sp.Expr]:
    """(coefficient of x_0, coefficient of x_t) of a posterior mean that is affine in both, factored."""
    return sp.factor(sp.diff(mean, x0)), sp.factor(sp.diff(mean, xt))


def is_zero(expr: sp.Expr) -> bool:
    """True if sympy proves `expr` == 0."""
    return sp.simplify(expr) == 0
