/* ptk_file.h: the file behind one of the current task's file descriptors,
 * for the tools on read/write system calls (filetop, fileslower). Pasted in
 * by pytracekit/collect/stream.py; needs ptk_stream.h (PTK_READ_FIELD) first.
 *
 * Without kprobes on vfs_read/vfs_write, the system call's fd is followed
 * through task->files->fdt->fd[fd] to the struct file; its name is the
 * dentry's (the last path component, as BCC shows it).
 */
#ifndef PTK_FILE_H
#define PTK_FILE_H

#define PTK_FILE_NAME_BYTES 64
#define PTK_S_IFMT 0170000
#define PTK_S_IFREG 0100000
#define PTK_S_IFSOCK 0140000

PTK_INLINE struct file *ptk_file_of_fd(u32 fd)
{
    struct task_struct *task = (struct task_struct *)bpf_get_current_task();
    struct files_struct *files = NULL;
    struct fdtable *fdt = NULL;
    struct file **fds = NULL;
    struct file *file = NULL;
    u32 max_fds = 0;
    PTK_READ_FIELD(files, task, struct task_struct, files);
    PTK_READ_FIELD(fdt, files, struct files_struct, fdt);
    PTK_READ_FIELD(max_fds, fdt, struct fdtable, max_fds);
    if (fd >= max_fds)
        return NULL;
    PTK_READ_FIELD(fds, fdt, struct fdtable, fd);
    bpf_probe_read_kernel(&file, sizeof(file), &fds[fd]);
    return file;
}

/* BCC's file type letter: R regular, S socket, O other. */
PTK_INLINE char ptk_file_type(struct file *file)
{
    struct inode *inode = NULL;
    u16 mode = 0;
    PTK_READ_FIELD(inode, file, struct file, f_inode);
    PTK_READ_FIELD(mode, inode, struct inode, i_mode);
    if ((mode & PTK_S_IFMT) == PTK_S_IFREG)
        return 'R';
    if ((mode & PTK_S_IFMT) == PTK_S_IFSOCK)
        return 'S';
    return 'O';
}

/* The dentry's name into buf (NUL-terminated, cut at size). */
PTK_INLINE void ptk_file_name(struct file *file, char *buf, u32 size)
{
    struct dentry *dentry = NULL;
    const unsigned char *name = NULL;
    PTK_READ_FIELD(dentry, file, struct file, f_path.dentry);
    PTK_READ_FIELD(name, dentry, struct dentry, d_name.name);
    if (bpf_probe_read_kernel_str(buf, size, name) < 0)
        buf[0] = 0;
}

#endif /* PTK_FILE_H */
