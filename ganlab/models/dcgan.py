"""DCGAN (Radford et al. 2016): the shared loop as it is; the networks come from nets/dcgan.py."""

from ganlab.models.base import GANModule


class DCGAN(GANModule):
    """DCGAN = GANModule with DCGAN networks and (by default) non-saturating BCE."""

    default_conditioning = "concat"  # model.conditioning=auto with data.labels set
