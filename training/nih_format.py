"""The ChestX-ray14 file layout, as facts shared by the readers and the phantom writer.

Kept free of heavy imports so that writing phantoms does not load torch.
"""

from __future__ import annotations

#: Data-entry file names, in the order readers look for them (the phantom writes the first).
DATA_ENTRY_NAMES = (
    "Data_Entry_2017_v2020.csv",
    "Data_Entry_2017_v2020.csv.gz",
    "Data_Entry_2017.csv",
    "Data_Entry_2017.csv.gz",
)
#: The data-entry header exactly as NIH writes it (commas inside the brackets included).
DATA_ENTRY_HEADER = (
    "Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position,"
    "OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y]"
)
#: The box list and its header exactly as NIH writes it (three empty trailing columns).
BBOX_NAME = "BBox_List_2017.csv"
BBOX_HEADER = "Image Index,Finding Label,Bbox [x,y,w,h],,,"
NO_FINDING = "No Finding"
#: Official split lists (one image name per line).
OFFICIAL_SPLITS = {"trainval": "train_val_list.txt", "test": "test_list.txt"}
#: DiRA's / BenchmarkTransferLearning's split files (``<name> <14 labels 0/1>``).
DIRA_SPLITS = {
    "train": "Xray14_train_official.txt",
    "val": "Xray14_val_official.txt",
    "test": "Xray14_test_official.txt",
}
