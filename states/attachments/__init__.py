"""Files carried by evidence records (photos, PDF, Word, Excel), stored content-addressed.

* `storage` – the small storage interface (`put`/`open`/`exists`) and its filesystem
  implementation under `<data dir>/files/ab/cd/<sha256>` (temp file + rename, de-duplicated).
* `sniff`   – the type from the bytes, never the name: JPEG, PNG, GIF, WebP, PDF,
  DOCX/XLSX/PPTX (the zip directory checked without extracting), legacy DOC/XLS/PPT (OLE2).
* `thumbs`  – a ≤ 320 px thumbnail of an image, with Pillow's decompression-bomb limit.
* `service` – reach, who may attach, the per-record limit, recording and listing (audited).

No guard requires an attachment: records count without files (photos are not a measure).
"""
