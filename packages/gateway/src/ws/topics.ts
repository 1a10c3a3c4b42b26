/** Node-wide uWS topics: broadcasts to everyone and admin updates, one topic per encoding. */
export const TOPIC = {
  all: (binary: boolean) => (binary ? 'all/p' : 'all/j'),
  admins: (binary: boolean) => (binary ? 'admins/p' : 'admins/j'),
};
