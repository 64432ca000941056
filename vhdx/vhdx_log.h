/* The VHDX metadata log (MS-VHDX 2.3): building entries, writing them into the circular
 * log, and replaying the log of an image that was not closed cleanly.
 *
 * Every metadata change of an open image (BAT sectors, sector bitmap blocks, metadata
 * region sectors) is first written to the log as an entry whose descriptors name the
 * 4 KiB sectors of the file it changes, then flushed, then applied in place. After a
 * crash, replay applies the newest complete sequence of entries again.
 */
#ifndef HV_VHDX_LOG_H
#define HV_VHDX_LOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "file.h"
#include "guid.h"

#define VHDX_LOG_SECTOR 4096u

/* One change to the file: a whole 4 KiB sector (data) or a run of zeros (data NULL,
 * zero_length a multiple of 4 KiB). file_offset is 4 KiB aligned. */
struct vhdx_log_update {
	uint64_t file_offset;
	const uint8_t *data;
	uint64_t zero_length;
};

/* Where and what the writer appends next. */
struct vhdx_log_writer {
	uint64_t log_offset; /* of the log region in the file */
	uint32_t log_length; /* multiple of 1 MiB */
	struct guid log_guid;
	uint64_t sequence; /* of the next entry (> 0) */
	uint32_t head;	   /* offset in the log where the next entry goes */
	uint32_t tail;	   /* offset of the oldest entry still needed for replay */
};

/* Starts a new log (after open or replay): an empty log (head == tail == 0) with a fresh
 * sequence. A new log needs a new log_guid (MS-VHDX: the header's LogGuid changes before the
 * log region is overwritten), so that entries of an earlier open never count as valid.
 * first_sequence may be any value > 0 (0 is taken as 1). QEMU starts at 1 for a fresh log
 * and at the replayed head's sequence number + 1 after a replay; the specification only
 * requires > 0 and what Hyper-V picks is not documented. */
void vhdx_log_writer_init(struct vhdx_log_writer *w, uint64_t log_offset, uint32_t log_length,
			  const struct guid *log_guid, uint64_t first_sequence);

/* Builds the next entry for the given updates into a buffer (*out, *out_len, a multiple of
 * 4 KiB; 4 KiB aligned, release it with free()) and advances the writer (head moves past
 * the entry, sequence + 1). The entry starts at the old head and carries Tail = w->tail.
 * A data update becomes one "desc" descriptor and one data sector, a zero update one "zero"
 * descriptor and no data sector, in the order given (replay applies them in that order).
 * flushed_file_offset and last_file_offset are the entry's FlushedFileOffset and
 * LastFileOffset (the file size that is durable, and the file size the entry needs: every
 * update must end at or below it). The entry may wrap around the end of the log: pieces[]
 * says where each part goes (file offset, length, offset in *out; at most 2 parts).
 * One log sector always stays free (as in QEMU), so that head == tail means empty: an entry
 * takes at most vhdx_log_space() bytes.
 * Returns 0, -ENOSPC when the entry does not fit between head and tail (the caller must
 * first make the entries before it unnecessary: flush the applied changes and move the
 * tail), -EFBIG when it would not fit even in an empty log (split the updates; see
 * vhdx_log_max_data_updates), -EINVAL for an update that is not 4 KiB aligned, has neither
 * data nor a zero length, touches the first 1 MiB or the log itself, or ends beyond
 * last_file_offset, -EOVERFLOW when the sequence number wrapped, or -ENOMEM. */
struct vhdx_log_piece {
	uint64_t file_offset;
	uint32_t length;
	uint32_t buf_offset;
};
int vhdx_log_entry_build(struct vhdx_log_writer *w, const struct vhdx_log_update *updates,
			 unsigned count, uint64_t flushed_file_offset, uint64_t last_file_offset,
			 uint8_t **out, uint32_t *out_len, struct vhdx_log_piece pieces[2],
			 unsigned *npieces);

/* Bytes an entry for these updates takes in the log (UINT32_MAX when larger). */
uint32_t vhdx_log_entry_size(const struct vhdx_log_update *updates, unsigned count);

/* Bytes the next entry may take now (log length - used - the one sector kept free). */
uint32_t vhdx_log_space(const struct vhdx_log_writer *w);

/* The most data updates one entry can hold in an empty log of this length. */
unsigned vhdx_log_max_data_updates(uint32_t log_length);

/* Moves the tail: entries before new_tail are applied in place and flushed. new_tail is the
 * log offset of the oldest entry still needed, or w->head when none is. A value that is not
 * a sector of the used part of the log (between the current tail and head) is ignored. */
void vhdx_log_set_tail(struct vhdx_log_writer *w, uint32_t new_tail);

/* What replay found. */
struct vhdx_log_replay_result {
	unsigned entries;	   /* entries of the active sequence (applied when apply) */
	uint64_t sequence;	   /* the head's sequence number, 0 if none */
	uint64_t last_file_offset; /* the file size the log asks for */
	unsigned descriptors;
};

/* Finds the active sequence of the log of a file whose header has log_guid set and, when
 * apply is true, writes its entries in place (tail to head), extends the file to the head's
 * LastFileOffset if it is shorter, and flushes. The caller renews FileWriteGuid before (the
 * specification counts replay as a modification) and clears the header's LogGuid after.
 *
 * The active sequence (MS-VHDX 2.3.3; DiscUtils does the same): a sequence is a chain of
 * valid entries, each starting where the previous one ends, sequence numbers increasing by
 * one; it is valid when its last entry's Tail names the start of an entry of the chain at
 * or before it; the active one is the valid sequence whose last entry has the highest
 * sequence number, replayed from the entry its Tail names (older entries of the chain are
 * not replayed). Entries with another LogGuid, a bad checksum, a torn data
 * sector or inconsistent lengths are not valid and end a sequence; they are not errors.
 * A zero log_guid means an empty log.
 *
 * Refuses (-EINVAL, reason in err) a log region that is not whole MiB at or after 1 MiB,
 * is longer than 1 GiB or ends beyond the file; and in the active sequence a target that
 * is not 4 KiB aligned, lies in the first 1 MiB or in the log, ends beyond both its entry's
 * LastFileOffset and the end of the file, a LastFileOffset above 256 TiB, more than 16 GiB
 * of zeros in total, and a file shorter than the head's FlushedFileOffset (truncated); and
 * two valid sequences ending with the same sequence number. Nothing is written when it
 * refuses.
 * result may be NULL. Returns 0 (also when the log holds no valid entry: result->entries
 * is 0) or -errno with a reason in err. */
int vhdx_log_replay(struct vdisk_file *file, uint64_t log_offset, uint32_t log_length,
		    const struct guid *log_guid, bool apply, struct vhdx_log_replay_result *result,
		    char *err, size_t err_size);

#endif
