"""The log's side of witnessing: submit each new checkpoint to every witness in the background
(:mod:`.submitter`, over :mod:`.client`), keep the cosignatures, and assemble the cosigned
checkpoint (:mod:`.cosigned`)."""
