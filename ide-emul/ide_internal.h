/* State of the IDE model shared by the taskfile/ATA code (ide.c), the ATAPI packet device
 * (ide_atapi.c) and the bus-master DMA engine (ide_dma.c). */
#ifndef HV_IDE_INTERNAL_H
#define HV_IDE_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#include "ide.h"
#include "scsi_cdrom.h"

#define IDE_SECTOR	 512u
#define IDE_MAX_MULTIPLE 16u   /* sectors per DRQ block for READ/WRITE MULTIPLE */
#define IDE_PRD_MAX	 8192u /* a PRD table fits in 64 KiB */
#define IDE_IOV_PER_REQ	 1024  /* iovecs per block-layer request (the kernel's limit) */
#define IDE_BUF_SIZE	 (IDE_MAX_MULTIPLE * IDE_SECTOR) /* the channel's PIO buffer */
#define ATAPI_CDB_SIZE	 12u /* IDENTIFY PACKET DEVICE word 0 bits 1:0 = 00 */

/* Status register */
enum {
	ST_ERR = 0x01,
	ST_DRQ = 0x08,
	ST_DSC = 0x10,
	ST_DF = 0x20,
	ST_DRDY = 0x40,
	ST_BSY = 0x80,
};
/* Error register */
enum {
	ERR_ABRT = 0x04,
	ERR_IDNF = 0x10,
	ERR_UNC = 0x40,
};
/* Device control register */
enum {
	CTL_NIEN = 0x02,
	CTL_SRST = 0x04,
	CTL_HOB = 0x80,
};
/* Bus-master registers */
enum {
	BM_CMD_START = 0x01,
	BM_CMD_TO_MEMORY = 0x08, /* the device reads from disk into guest memory */
	BM_ST_ACTIVE = 0x01,
	BM_ST_ERROR = 0x02,
	BM_ST_INTERRUPT = 0x04,
	BM_ST_CAPABLE = 0x60, /* drive 0/1 DMA capable: plain read/write bits */
};

enum ide_xfer {
	XFER_NONE,
	XFER_PIO_IN,  /* disk to guest through the data port */
	XFER_PIO_OUT, /* guest to disk through the data port */
	XFER_DMA_IN,  /* disk to guest memory */
	XFER_DMA_OUT, /* guest memory to disk */
	XFER_FLUSH,
	XFER_PACKET,   /* ATAPI: the command packet comes in through the data port */
	XFER_ATAPI_IN, /* ATAPI: PIO data-in, DRQ blocks of at most the byte count limit */
	XFER_DMA_BUF,  /* ATAPI: a reply built in the channel's buffer, to guest memory */
};

struct ide_drive {
	enum ide_device_kind kind;
	struct vdisk *disk;	  /* an ATA disk */
	struct scsi_cdrom *cdrom; /* a DVD drive: the MMC target with the medium, tray, sense */
	uint64_t sectors;	  /* of a disk */
	uint16_t cylinders;	  /* default CHS geometry */
	uint8_t heads, spt;
	uint8_t cur_heads, cur_spt; /* INITIALIZE DEVICE PARAMETERS */
	unsigned multiple;	    /* sectors per DRQ block of READ/WRITE MULTIPLE; 0: off */
	bool write_cache;
	uint8_t transfer_mode; /* SET FEATURES 03h value: 0x08|pio, 0x20|mdma, 0x40|udma */
	char serial[21];
	struct ide_io_stats stats; /* of a disk; a DVD drive's target counts its own */
};

/* One block-layer request of a DMA transfer (the iovecs are split at IDE_IOV_PER_REQ). */
struct ide_dma_part {
	int first_iov, iovcnt;
	uint64_t offset;
};

struct ide_channel {
	struct ide_controller *ctrl;
	unsigned index;
	pthread_mutex_t lock;
	struct ide_drive drive[2];

	/* taskfile: current values and the previous ones (HOB, for 48-bit commands) */
	uint8_t feature, nsect, lbal, lbam, lbah;
	uint8_t hob_feature, hob_nsect, hob_lbal, hob_lbam, hob_lbah;
	uint8_t select; /* device register: bit 4 unit, bit 6 LBA */
	uint8_t status, error, control;
	bool irq_pending; /* INTRQ, before nIEN masking */
	/* Each device has its own registers; this model keeps one set. They differ only in the
	 * signatures a reset leaves, which hold until the host writes a register or a command:
	 * until then, selecting the other device shows its signature. */
	bool signature_shown;
	/* A reset ended while requests of the command it cancelled were still in flight: the
	 * devices stay busy until those complete (they still use the buffers). */
	bool reset_pending;

	/* the command in progress */
	uint8_t command;
	enum ide_xfer xfer;
	uint64_t lba;	    /* next sector to transfer */
	uint32_t remaining; /* sectors of the command not yet transferred */
	uint32_t block;	    /* sectors per DRQ block (PIO) */
	uint8_t *buf;	    /* PIO DRQ block, IDE_MAX_MULTIPLE sectors, also IDENTIFY */
	uint32_t buf_pos, buf_len;
	uint64_t io_offset; /* byte offset on the disk of the next request */
	uint64_t io_bytes;  /* bytes of a DMA transfer */

	/* ATAPI PIO data-in: the byte count limit of the PACKET command, the end of the DRQ
	 * block the guest is reading */
	uint16_t byte_limit;
	uint32_t drq_end;
	bool packet_dma; /* the PACKET command asked for DMA (features bit 0) */
	/* ATAPI: the packet as a request to the drive's MMC target. Replies come back in buf;
	 * a read moves in pieces: the buffer's worth at a time (PIO) or once into the PRD
	 * table's memory (DMA). */
	uint8_t atapi_cdb[ATAPI_CDB_SIZE];
	struct scsi_request atapi_req;
	struct iovec atapi_iov;
	uint64_t atapi_len;   /* bytes of the read */
	uint64_t atapi_piece; /* where the piece being read starts in them */
	uint64_t atapi_left;  /* bytes after that piece (PIO) */
	bool atapi_done_inline;

	/* asynchronous I/O: requests carry the generation they started in; a reset moves it on
	 * so that late completions are dropped */
	unsigned generation, io_generation;
	unsigned io_pending; /* block-layer requests in flight */
	pthread_cond_t idle; /* signalled when io_pending drops to 0 */
	int io_result;
	struct iovec pio_iov;

	/* bus master */
	uint8_t bm_cmd, bm_status;
	uint32_t prd_addr;
	bool dma_waiting;      /* a DMA command was issued; the transfer starts with BM_CMD_START */
	struct iovec *dma_iov; /* IDE_PRD_MAX + 1 entries */
	struct ide_dma_part *dma_parts;
	unsigned dma_nparts;
	bool prd_longer; /* the PRD table describes more than the transfer */
};

struct ide_controller {
	struct ide_config cfg;
	struct ide_channel channel[2];
	struct ide_stats stats; /* updated under the channels' locks, read racily */
};

/* ---- ide.c, for the DMA engine and the ATAPI device (channel locked) ---- */
struct ide_drive *ide_current(struct ide_channel *ch);
/* Ends the command: status DRDY|DSC (| ERR with error), interrupt. */
void ide_command_done(struct ide_channel *ch, uint8_t error);
/* Starts the block-layer requests of the current transfer on the drive's queue. */
int ide_start_io(struct ide_channel *ch);
/* Other work of the current command in flight (the ATAPI drive's reads): the device is
 * busy and a reset waits for it. ide_io_end returns whether the command is still the
 * current one (no reset since); if not, a reset that waited for it finishes. */
void ide_io_begin(struct ide_channel *ch);
bool ide_io_end(struct ide_channel *ch);
void ide_raise_irq(struct ide_channel *ch);
/* A device's signature (ATA or packet) in the registers, as a reset leaves them;
 * ide_show_signature also selects device 0's LBA/head bits as a reset does and lets a
 * change of device show the other one's signature. */
void ide_load_signature(struct ide_channel *ch, const struct ide_drive *d);
void ide_show_signature(struct ide_channel *ch, const struct ide_drive *d);
void ide_set_features(struct ide_channel *ch, struct ide_drive *d);
/* IDENTIFY data: an ATA string at words [first, first + count); the transfer mode words
 * (63, 64-68, 88); the integrity word plus the little-endian bytes of the 256 words. */
void ide_put_string(uint16_t *words, unsigned first, unsigned count, const char *s);
void ide_identify_modes(uint16_t *words, uint8_t transfer_mode);
void ide_identify_finish(uint16_t *words, uint8_t *out);
/* Puts a new device in an empty slot: 0, -EINVAL (bad slot) or -EBUSY. */
int ide_attach_drive(struct ide_controller *c, unsigned channel, unsigned unit,
		     const struct ide_drive *init);
/* The IDENTIFY data in ch->buf goes to the host: one PIO block, interrupt. */
void ide_start_identify(struct ide_channel *ch);

/* ---- ide_atapi.c (channel locked) ---- */
/* An ATA command written to a packet device. */
void ide_atapi_command(struct ide_channel *ch, struct ide_drive *d, uint8_t cmd);
/* Data port accesses during the packet and data-in phases. */
uint32_t ide_atapi_data_read(struct ide_channel *ch, unsigned size);
void ide_atapi_data_write(struct ide_channel *ch, unsigned size, uint32_t value);
/* The bus master started a read's DMA into ch->dma_iov (iovcnt entries, io_bytes). */
void ide_atapi_dma_read(struct ide_channel *ch, int iovcnt);
/* A DMA transfer ended: 0, -EIO when the target ended the read in error, or -EFAULT for
 * a PRD table the bus master could not use. */
void ide_atapi_dma_done(struct ide_channel *ch, int result);
/* A reset (SRST, DEVICE RESET) reached the drive. */
void ide_atapi_reset(struct ide_drive *d);

/* ---- ide_dma.c (channel locked) ---- */
/* Prepares a DMA command of ch->io_bytes at ch->io_offset (XFER_DMA_BUF: from ch->buf) in
 * the direction of ch->xfer (the bus master's must agree): waits for the start bit. */
void ide_dma_command(struct ide_channel *ch);
/* The transfer's requests completed (result 0 or -errno). */
void ide_dma_done(struct ide_channel *ch, int result);
/* Drops a DMA transfer that waits for the start bit (reset). */
void ide_dma_reset(struct ide_channel *ch);

#endif
