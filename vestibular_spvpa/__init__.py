"""Wang et al. 2019: 2.5D U-Net with supervised spatial attention for vestibular schwannoma segmentation."""
