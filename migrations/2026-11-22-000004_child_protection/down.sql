DROP TABLE access_events;
DROP TABLE cp_items;
