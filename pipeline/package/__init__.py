"""The submission package around the datasets: the annotated CRF (:mod:`.acrf`), the reviewer's
guides (cSDRG, ADRG) and the eCTD module 5 folder layout with its checksum manifest (:mod:`.ectd`)."""
