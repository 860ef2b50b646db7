"""Bouget et al. 2021: AGUNet / DAUNet / DAGUNet / UNet-FV network family for meningioma segmentation."""
