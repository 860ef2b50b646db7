"""Files in and out beyond MONAI's readers and writers: DICOM series (:mod:`~common.io.dicom`), DICOM SEG output
(:mod:`~common.io.dicom_seg`) and 8-bit NIfTI probability maps (:mod:`~common.io.probability_writer`)."""
